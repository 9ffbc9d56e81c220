import { Sequelize, QueryTypes, type Transaction } from 'sequelize';
import pg from 'pg';
import type { Logger } from '@chat/logger';

/** Database is a pooled connection to PostgreSQL through sequelize and pg. */
export interface Database {
  sequelize: Sequelize;
  close(): Promise<void>;
}

// Return bigint (int8) columns as JS numbers: our counters stay far below 2^53.
pg.types.setTypeParser(20, (v: string) => Number(v));

/** connectDatabase opens a pool and checks that the server answers. */
export async function connectDatabase(url: string, logger: Logger, poolMax = 10): Promise<Database> {
  const sequelize = new Sequelize(url, {
    dialect: 'postgres',
    dialectModule: pg,
    logging: false,
    pool: { max: poolMax, min: 0, idle: 10_000, acquire: 10_000 },
    define: { underscored: true, timestamps: false },
  });
  await sequelize.authenticate();
  logger.info('connected to PostgreSQL', { host: new URL(url).host });
  return { sequelize, close: () => sequelize.close() };
}

/** Migration is one versioned, forward-only schema change of a service. */
export interface Migration {
  id: string;
  up: string;
}

/**
 * migrate applies a service's migrations to its own schema, each once, in order. A transaction-level
 * advisory lock per schema makes concurrent replicas wait for each other instead of racing.
 */
export async function migrate(sequelize: Sequelize, schema: string, migrations: Migration[], logger: Logger): Promise<string[]> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`bad schema name ${schema}`);
  return sequelize.transaction(async (t: Transaction) => {
    await sequelize.query('select pg_advisory_xact_lock(hashtext(:key))', { replacements: { key: `migrate:${schema}` }, transaction: t });
    await sequelize.query(`create schema if not exists ${schema}`, { transaction: t });
    await sequelize.query(`create table if not exists ${schema}.schema_migrations (id text primary key, applied_at timestamptz not null default now())`, { transaction: t });
    const rows = await sequelize.query<{ id: string }>(`select id from ${schema}.schema_migrations`, { type: QueryTypes.SELECT, transaction: t });
    const done = new Set(rows.map((r) => r.id));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      await sequelize.query(m.up, { transaction: t });
      await sequelize.query(`insert into ${schema}.schema_migrations (id) values (:id)`, { replacements: { id: m.id }, transaction: t });
      applied.push(m.id);
    }
    if (applied.length) logger.info('migrations applied', { schema, applied });
    return applied;
  });
}
