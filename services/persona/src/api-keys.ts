/*
 * Administers the gateway's API keys (stored in the persona schema as SHA-256 digests).
 *
 *   DATABASE_URL=postgres://… node services/persona/dist/src/api-keys.js create --owner alice [--name laptop]
 *   DATABASE_URL=postgres://… node services/persona/dist/src/api-keys.js list --owner alice
 *   DATABASE_URL=postgres://… node services/persona/dist/src/api-keys.js revoke --owner alice --id <key id>
 *
 * `create` prints the key once, as JSON `{"id","owner","name","prefix","api_key"}`; nothing keeps it
 * but its digest. Exit code 0 on success, 1 (with the reason) on failure or bad arguments.
 * With the embedded default (no DATABASE_URL) run it while `npm start` runs, with
 * DATABASE_URL=postgres://postgres:postgres@127.0.0.1:<port>/chat (the port is in the
 * "embedded PostgreSQL is running" log line). Keys can also be made over REST: POST /api/api_keys.
 */
import { defineConfig, env, loadConfig, ConfigError } from '@chat/config';
import { connectDatabase, migrate } from '@chat/db';
import { isAppError } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { ApiKeyRepository, type StoredApiKey } from './adapters/postgres/api-key-repo.js';
import { migrations, SCHEMA } from './adapters/postgres/migrations.js';

const cliConfig = defineConfig({ DATABASE_URL: env.postgresUrl() });

const USAGE = 'usage: api-keys.js create --owner <owner> [--name <label>] | list --owner <owner> | revoke --owner <owner> --id <key id>';

function parseArgs(argv: string[]): { command: string; flags: Record<string, string> } {
  const [command = '', ...rest] = argv;
  const flags: Record<string, string> = {};
  for (let i = 0; i < rest.length; i += 2) {
    const flag = rest[i]!;
    const value = rest[i + 1];
    if (!/^--(owner|name|id)$/.test(flag) || value === undefined) throw new Error(`bad argument ${flag}; ${USAGE}`);
    flags[flag.slice(2)] = value;
  }
  if (!['create', 'list', 'revoke'].includes(command) || !flags.owner || (command === 'revoke' && !flags.id)) throw new Error(USAGE);
  return { command, flags };
}

const describe = (k: StoredApiKey) => ({ id: k.id, owner: k.ownerId, name: k.name, prefix: k.prefix, created_at: k.createdAt.toISOString(), revoked_at: k.revokedAt?.toISOString() ?? null });

async function main(): Promise<void> {
  const logger = configureLogger({ target: 'api-keys', silent: true });
  let db: Awaited<ReturnType<typeof connectDatabase>> | undefined;
  try {
    const { command, flags } = parseArgs(process.argv.slice(2));
    const cfg = loadConfig([cliConfig]).get(cliConfig) as { DATABASE_URL: string };
    db = await connectDatabase(cfg.DATABASE_URL, logger, 1);
    await migrate(db.sequelize, SCHEMA, migrations, logger);
    const repo = new ApiKeyRepository(db.sequelize);
    let out: unknown;
    if (command === 'create') {
      const { key, secret } = await repo.create(flags.owner!, flags.name ?? 'cli');
      out = { ...describe(key), api_key: secret };
    } else if (command === 'list') {
      out = { api_keys: (await repo.list(flags.owner!)).map(describe) };
    } else {
      const key = /^[0-9a-f-]{36}$/i.test(flags.id!) ? await repo.revoke(flags.owner!, flags.id!) : undefined;
      if (!key) throw new Error(`no API key ${flags.id} of owner ${flags.owner}`);
      out = describe(key);
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } catch (err) {
    const message = err instanceof ConfigError || isAppError(err) || err instanceof Error ? err.message : String(err);
    process.stderr.write(`api-keys: ${message}\n`);
    process.exitCode = 1;
  } finally {
    await db?.close();
  }
}

await main();
