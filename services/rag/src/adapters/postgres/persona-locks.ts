import type { Sequelize } from '@chat/db';
import type { Logger } from '@chat/logger';
import type { PersonaLocks } from '../../domain/ports.js';

/** The pg client sequelize hands out (only what is used here). */
interface PgConnection {
  query(sql: string, params: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

/** The first key of every lock of this kind (the second is the persona id's hash). */
const NAMESPACE = 'chat.rag.persona';
const MIN_WAIT_MS = 25;
const MAX_WAIT_MS = 500;

/** LocksClosed is what waiting and new callers get once the locks are closed (the process stops). */
export class LocksClosed extends Error {
  constructor() {
    super('persona locks are closed: the rag service is stopping');
  }
}

/**
 * PgPersonaLocks are PostgreSQL session-level advisory locks, one per persona
 * (`pg_try_advisory_lock(hashtext('chat.rag.persona'), hashtext(persona_id))`), all held on one
 * dedicated connection of the pool. Waiting polls with `pg_try_advisory_lock` (backing off up to
 * 500 ms), so one connection serves every persona and a waiter never pins a connection. The server
 * releases the locks of a process that dies (its connection closes). If the lock connection
 * breaks while a lock is held, the lock is gone: that is logged, and the next caller opens a new
 * connection. Two personas whose ids share a hash only wait for each other.
 */
export class PgPersonaLocks implements PersonaLocks {
  private connection: Promise<PgConnection> | undefined;
  private closed = false;
  /** Serializes statements on the one connection. */
  private queue: Promise<unknown> = Promise.resolve();
  /** How many callers of this process hold each persona's lock (the chain allows at most one; kept for safety). */
  private readonly held = new Map<string, number>();

  constructor(
    private readonly sequelize: Sequelize,
    private readonly logger: Logger,
  ) {}

  async withLock<T>(personaId: string, fn: () => Promise<T>): Promise<T> {
    await this.acquire(personaId);
    try {
      return await fn();
    } finally {
      await this.release(personaId);
    }
  }

  private async acquire(personaId: string): Promise<void> {
    let wait = MIN_WAIT_MS;
    for (;;) {
      if (this.closed) throw new LocksClosed();
      const got = await this.statement('select pg_try_advisory_lock(hashtext($1), hashtext($2)) as ok', [NAMESPACE, personaId]);
      if (got.rows[0]?.ok === true) {
        this.held.set(personaId, (this.held.get(personaId) ?? 0) + 1);
        return;
      }
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(MAX_WAIT_MS, wait * 2);
    }
  }

  private async release(personaId: string): Promise<void> {
    const n = (this.held.get(personaId) ?? 1) - 1;
    if (n > 0) this.held.set(personaId, n);
    else this.held.delete(personaId);
    // After close every lock was given back at once.
    if (this.closed) return;
    try {
      const res = await this.statement('select pg_advisory_unlock(hashtext($1), hashtext($2)) as ok', [NAMESPACE, personaId]);
      if (res.rows[0]?.ok !== true) this.logger.warn('a persona lock was no longer held when released (its connection was replaced)', { persona_id: personaId });
    } catch (err) {
      // The connection broke: the server released the lock with it.
      this.logger.warn('could not release a persona lock; its connection is gone, and the lock with it', { persona_id: personaId, err });
    }
  }

  /** statement runs one query on the lock connection, one at a time; a failed connection is replaced next time. */
  private statement(sql: string, params: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }> {
    const run = async () => {
      if (this.closed) throw new LocksClosed();
      this.connection ??= this.sequelize.connectionManager.getConnection({ type: 'write' }) as Promise<unknown> as Promise<PgConnection>;
      const conn = await this.connection;
      try {
        return await conn.query(sql, params);
      } catch (err) {
        if (this.connection) {
          this.connection = undefined;
          if (this.held.size > 0) this.logger.warn('the persona lock connection failed; locks held on it are released', { personas: [...this.held.keys()], err });
          await this.dispose(conn);
        }
        throw err;
      }
    };
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async dispose(conn: PgConnection): Promise<void> {
    try {
      await this.sequelize.connectionManager.releaseConnection(conn as never);
    } catch {
      // Already gone.
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const conn = this.connection;
    this.connection = undefined;
    if (!conn) return;
    await this.queue;
    const c = await conn.catch(() => undefined);
    if (!c) return;
    // Every lock of this session goes with one statement; then the connection returns to the pool.
    await c.query('select pg_advisory_unlock_all()', []).catch(() => undefined);
    this.held.clear();
    await this.dispose(c);
  }
}
