export { connectDatabase, migrate, type Database, type Migration } from './database.js';
export { Outbox, outboxClaimMigration, outboxMigration } from './outbox.js';
export { eventually, isolatedDatabase, testDatabase, testInfrastructure, type IsolatedDatabase } from './testing.js';
export { freePort, startEmbeddedPostgres, type EmbeddedPostgres } from './embedded.js';
export { QueryTypes, Sequelize, DataTypes, Model, Op, UniqueConstraintError, type Transaction } from 'sequelize';
