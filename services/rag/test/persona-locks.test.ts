import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectDatabase, isolatedDatabase, startEmbeddedPostgres, type Database, type EmbeddedPostgres, type IsolatedDatabase } from '@chat/db';
import { configureLogger } from '@chat/logger';
import { LocksClosed, PgPersonaLocks } from '../src/adapters/postgres/persona-locks.js';
import { IngestService, type IngestDeps } from '../src/domain/ingest.js';

const logger = configureLogger({ silent: true });

/** A promise and the function that resolves it. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The per-persona PostgreSQL advisory lock that orders ingestion and re-embedding across rag
 * replicas (docs/decisions/0013, 0019): two lock objects on two connection pools stand for two
 * processes, on a real PostgreSQL.
 */
describe('rag persona locks (PostgreSQL advisory locks)', function () {
  this.timeout(60_000);
  let embedded: EmbeddedPostgres | undefined;
  let isolated: IsolatedDatabase | undefined;
  let tmp = '';
  let one: Database;
  let two: Database;
  const open: PgPersonaLocks[] = [];
  const locks = (db: Database) => {
    const l = new PgPersonaLocks(db.sequelize, logger);
    open.push(l);
    return l;
  };

  before(async () => {
    let url: string;
    if (process.env.DATABASE_URL) {
      isolated = await isolatedDatabase(process.env.DATABASE_URL, 'rag_locks', logger);
      url = isolated.url;
    } else {
      tmp = mkdtempSync(join(tmpdir(), 'rag-locks-'));
      chmodSync(tmp, 0o755);
      embedded = await startEmbeddedPostgres({ dataDir: join(tmp, 'pg'), logger });
      url = embedded.url;
    }
    // Every lock object keeps one connection of its pool (as one rag process does).
    one = await connectDatabase(url, logger, 10);
    two = await connectDatabase(url, logger, 10);
  });
  after(async () => {
    for (const l of open) await l.close();
    await one?.close();
    await two?.close();
    await isolated?.drop();
    await embedded?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('lets one process at a time hold a persona’s lock; other personas are not held up', async () => {
    const a = locks(one);
    const b = locks(two);
    const order: string[] = [];
    const release = deferred();
    const holding = deferred();
    const first = a.withLock('persona-1', async () => {
      order.push('a:start');
      holding.resolve();
      await release.promise;
      order.push('a:end');
    });
    await holding.promise;
    const second = b.withLock('persona-1', async () => {
      order.push('b:start');
    });
    // Another persona goes ahead while persona-1 is held.
    await b.withLock('persona-2', async () => {
      order.push('b:other');
    });
    await tick(200);
    assert.deepEqual(order, ['a:start', 'b:other'], 'the second process waits for the lock');
    release.resolve();
    await Promise.all([first, second]);
    assert.deepEqual(order, ['a:start', 'b:other', 'a:end', 'b:start']);
  });

  it('gives the lock back when fn fails, and refuses waiters once closed', async () => {
    const a = locks(one);
    const b = locks(two);
    await assert.rejects(a.withLock('persona-3', async () => Promise.reject(new Error('boom'))), /boom/);
    assert.equal(await b.withLock('persona-3', async () => 'free'), 'free');
    const release = deferred();
    const holding = deferred();
    const held = a.withLock('persona-4', async () => {
      holding.resolve();
      await release.promise;
    });
    await holding.promise;
    const c = locks(two);
    const waiting = c.withLock('persona-4', async () => 'never');
    await tick(100);
    await c.close();
    await assert.rejects(waiting, LocksClosed);
    release.resolve();
    await held;
  });

  it('a process that closes (or dies) gives its locks back to the others', async () => {
    const a = locks(one);
    const b = locks(two);
    const holding = deferred();
    const never = new Promise<void>(() => undefined);
    void a.withLock('persona-5', async () => {
      holding.resolve();
      await never;
    });
    await holding.promise;
    await a.close();
    assert.equal(await b.withLock('persona-5', async () => 'taken over'), 'taken over');
  });

  it('IngestService.exclusive takes the lock, so two rag processes never write one persona at once', async () => {
    const service = (db: Database) => new IngestService({ locks: locks(db), logger, settings: { chunkSize: 100, chunkOverlap: 0, embedBatchSize: 8, concurrency: 1 } } as unknown as IngestDeps);
    const x = service(one);
    const y = service(two);
    let inside = 0;
    let most = 0;
    const work = async () => {
      inside++;
      most = Math.max(most, inside);
      await tick(30);
      inside--;
    };
    await Promise.all([1, 2, 3].flatMap(() => [x.exclusive('persona-6', work), y.exclusive('persona-6', work)]));
    assert.equal(most, 1, 'at most one writer of the persona at any moment, across both processes');
  });
});
