import type { Sequelize } from '@chat/db';
import type { Logger } from '@chat/logger';

/** The channel the rag schema's triggers notify with a persona id when its sources or spaces change (migration 0300). */
export const KNOWLEDGE_CHANNEL = 'rag_knowledge';

/** The pg client sequelize hands out (only what is used here). */
interface PgListenConnection {
  query(sql: string): Promise<unknown>;
  on(event: 'notification', fn: (msg: { channel: string; payload?: string }) => void): unknown;
  on(event: 'error' | 'end', fn: (err?: unknown) => void): unknown;
  removeListener(event: string, fn: (...args: never[]) => void): unknown;
}

/** KnowledgeListenerHooks are told what the listener receives and whether it receives at all. */
export interface KnowledgeListenerHooks {
  /** A persona's sources or spaces changed (on any replica; committed). */
  changed(personaId: string): void;
  /** true: LISTEN is in effect, every later change is told; false: changes may go untold until the next true. */
  live(live: boolean): void;
}

const MIN_RETRY_MS = 100;
const MAX_RETRY_MS = 5_000;

/** The parts of sequelize's connection manager that open and close a connection outside the pool. */
interface RawConnections {
  connect(config: unknown): Promise<unknown>;
  disconnect(connection: unknown): Promise<void>;
}

/**
 * PgKnowledgeListener holds one connection (its own, outside the pool) that LISTENs on
 * `rag_knowledge`: the rag schema's triggers notify it, at commit, with the persona id of every
 * change of a persona's sources or embedding spaces, whichever replica made it. It reports
 * `live(true)` once LISTEN is in effect and `live(false)` as soon as the connection fails (then
 * reconnects with backoff), so the cache it feeds is off exactly while changes could be missed
 * (docs/decisions/0022).
 */
export class PgKnowledgeListener {
  private connection: PgListenConnection | undefined;
  private stopped = false;
  private retryMs = MIN_RETRY_MS;
  private timer: NodeJS.Timeout | undefined;
  private connecting: Promise<void> | undefined;
  /** The listeners put on each connection, taken off when it is closed. */
  private readonly attached = new Map<PgListenConnection, Array<[string, (...args: never[]) => void]>>();

  constructor(
    private readonly sequelize: Sequelize,
    private readonly hooks: KnowledgeListenerHooks,
    private readonly logger: Logger,
  ) {}

  /** start connects and listens; it resolves once listening (or after the first failure, retrying in the background). */
  start(): Promise<void> {
    this.connecting ??= this.connect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** listening says whether LISTEN is in effect now. */
  get listening(): boolean {
    return this.connection !== undefined;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let conn: PgListenConnection | undefined;
    try {
      // Same settings as the pool's connections (sequelize's own factory), but not taken from the
      // pool: a connection held for the process's lifetime would shrink it for every other query.
      conn = (await this.raw.connect(this.sequelize.config)) as PgListenConnection;
      const c = conn;
      const onNotification = (msg: { channel: string; payload?: string }) => {
        if (msg.channel === KNOWLEDGE_CHANNEL && msg.payload) this.hooks.changed(msg.payload);
      };
      const onLost = (err?: unknown) => this.lost(c, err);
      c.on('notification', onNotification);
      c.on('error', onLost);
      c.on('end', onLost);
      this.attached.set(c, [
        ['notification', onNotification],
        ['error', onLost],
        ['end', onLost],
      ]);
      await c.query(`LISTEN ${KNOWLEDGE_CHANNEL}`);
      if (this.stopped) {
        await this.release(c);
        return;
      }
      this.connection = c;
      this.retryMs = MIN_RETRY_MS;
      this.hooks.live(true);
    } catch (err) {
      if (conn) await this.release(conn);
      if (this.stopped) return;
      this.logger.warn('cannot listen for knowledge changes; replies read the knowledge state from PostgreSQL until it can', { err, retry_ms: this.retryMs });
      this.retry();
    }
  }

  private lost(conn: PgListenConnection, err: unknown): void {
    if (this.connection !== conn) return;
    this.connection = undefined;
    // Changes from now until LISTEN is in effect again would go untold: the cache is off meanwhile.
    this.hooks.live(false);
    if (this.stopped) return;
    this.logger.warn('the knowledge change listener lost its connection; reconnecting', { err });
    void this.release(conn);
    this.retry();
  }

  private retry(): void {
    if (this.stopped || this.timer) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(MAX_RETRY_MS, this.retryMs * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.start();
    }, wait);
    this.timer.unref();
  }

  private get raw(): RawConnections {
    return this.sequelize.connectionManager as unknown as RawConnections;
  }

  private async release(conn: PgListenConnection): Promise<void> {
    for (const [event, fn] of this.attached.get(conn) ?? []) conn.removeListener(event, fn);
    this.attached.delete(conn);
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded: closing a connection that already broke must not hold up a stop.
      await Promise.race([this.raw.disconnect(conn), new Promise((r) => (timer = setTimeout(r, 2_000)))]);
    } catch {
      // Already gone.
    } finally {
      clearTimeout(timer);
    }
  }

  /** stop stops listening and closes the connection. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.connecting?.catch(() => undefined);
    const conn = this.connection;
    this.connection = undefined;
    this.hooks.live(false);
    if (conn) await this.release(conn);
  }
}
