/*
 * Re-seals every API profile key under MASTER_KEY_VERSION (default: the highest of MASTER_KEYS).
 *
 *   DATABASE_URL=postgres://… MASTER_KEYS=v1:…,v2:… MASTER_KEY_VERSION=v2 \
 *     node services/persona/dist/src/rotate-master-key.js
 *
 * Keep the old version in MASTER_KEYS until this reports success on every database, then remove it.
 * Prints one JSON report line; exit code 0 on success, 1 on failure (the reason, never key material).
 */
import { defineConfig, env, loadConfig, ConfigError } from '@chat/config';
import { connectDatabase, migrate } from '@chat/db';
import { configureLogger } from '@chat/logger';
import { loadKeyring, secretsConfig } from '@chat/secrets';
import { migrations, SCHEMA } from './adapters/postgres/migrations.js';
import { rotateApiKeys } from './rotation.js';

const rotateConfig = defineConfig({
  DATABASE_URL: env.postgresUrl(),
  ROTATE_BATCH_SIZE: env.positiveInt().default(100),
});

async function main(): Promise<void> {
  const logger = configureLogger({ target: 'rotate-master-key' });
  let db: Awaited<ReturnType<typeof connectDatabase>> | undefined;
  try {
    const config = loadConfig([rotateConfig, secretsConfig]);
    const cfg = config.get(rotateConfig) as { DATABASE_URL: string; ROTATE_BATCH_SIZE: number };
    const secrets = config.get(secretsConfig) as Parameters<typeof loadKeyring>[0];
    if (!process.env.MASTER_KEYS?.trim()) logger.warn('MASTER_KEYS is unset: rotating with the local key file (embedded default)');
    const keyring = await loadKeyring(secrets, logger);
    db = await connectDatabase(cfg.DATABASE_URL, logger, 2);
    await migrate(db.sequelize, SCHEMA, migrations, logger);
    const report = await rotateApiKeys(db.sequelize, keyring, logger, cfg.ROTATE_BATCH_SIZE);
    logger.info('master key rotation done', { ...report });
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } catch (err) {
    const message = err instanceof ConfigError || err instanceof Error ? err.message : String(err);
    logger.error('master key rotation failed', { error: message });
    process.exitCode = 1;
  } finally {
    await db?.close();
  }
}

await main();
