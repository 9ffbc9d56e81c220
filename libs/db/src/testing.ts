import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventBus } from '@chat/events';
import type { Logger } from '@chat/logger';
import { connectDatabase } from './database.js';
import { startEmbeddedPostgres } from './embedded.js';

/** IsolatedDatabase is a fresh database on an existing server, for one test suite. */
export interface IsolatedDatabase {
  url: string;
  /** Drops the database (its connections are closed first). */
  drop(): Promise<void>;
}

/**
 * isolatedDatabase creates a new, empty database on the server of serverUrl, so suites that share
 * a server (CI's DATABASE_URL) never see each other's rows or another run's leftovers.
 */
export async function isolatedDatabase(serverUrl: string, prefix: string, logger: Logger): Promise<IsolatedDatabase> {
  const name = `${prefix.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}_${randomBytes(6).toString('hex')}`;
  const admin = await connectDatabase(serverUrl, logger, 1);
  try {
    await admin.sequelize.query(`create database ${name}`);
  } finally {
    await admin.close();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const a = await connectDatabase(serverUrl, logger, 1);
      try {
        await a.sequelize.query(`drop database if exists ${name} with (force)`);
      } finally {
        await a.close();
      }
    },
  };
}

/**
 * testDatabase is a database of one test suite's own: an isolated one on the server of
 * DATABASE_URL (what `npm test` sets), or without it an embedded PostgreSQL in a temporary
 * directory. drop() removes it either way.
 */
export async function testDatabase(prefix: string, logger: Logger): Promise<IsolatedDatabase> {
  if (process.env.DATABASE_URL) return isolatedDatabase(process.env.DATABASE_URL, prefix, logger);
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  chmodSync(dir, 0o755); // the embedded server may run as another user (root)
  const pg = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), logger });
  return {
    url: pg.url,
    drop: async () => {
      await pg.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * testInfrastructure is the `database` module (on url) and the `bus` module a test's Runtime needs
 * to run a service module, as the launcher's modules make them from configuration.
 */
export function testInfrastructure(url: string, bus: EventBus, logger: Logger) {
  return [
    {
      name: 'database',
      async init() {
        const database = await connectDatabase(url, logger);
        return { value: database, stop: () => database.close() };
      },
    },
    { name: 'bus', init: async () => ({ value: bus }) },
  ];
}

/**
 * eventually polls fn until it returns a truthy value and returns it; a throw counts as "not yet".
 * After timeoutMs it fails naming what it waited for (and the last error). For tests.
 */
export async function eventually<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
