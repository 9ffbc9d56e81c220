import type { Sequelize, Transaction } from 'sequelize';
import type { EventBus, OutgoingEvent } from '@chat/events';
import type { Logger } from '@chat/logger';

/** outboxMigration creates a service's outbox table in its own schema. */
export function outboxMigration(schema: string): { id: string; up: string } {
  return {
    id: '000_outbox',
    up: `create table ${schema}.outbox (
      id bigserial primary key,
      topic text not null,
      key text not null,
      payload bytea not null,
      headers jsonb not null default '{}'::jsonb,
      created_at timestamptz not null default now()
    )`,
  };
}

/** Rows one relay pass publishes at most. */
const BATCH = 200;

/** The pool's pg client, used directly for multi-statement round trips. */
interface RawConnection {
  query(sql: string): Promise<{ rows: unknown[] } | Array<{ rows: unknown[] }>>;
}

interface OutboxRow {
  id: number;
  topic: string;
  key: string;
  payload: Buffer;
  headers: Record<string, string>;
}

/**
 * Outbox makes "write a row and publish its event" atomic: the event is written in the same
 * transaction as the row, and a relay publishes it after commit — at once when this process wrote
 * it (no polling delay on the hot path), and by a periodic sweep for rows a crash left behind.
 */
export class Outbox {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly sequelize: Sequelize,
    private readonly schema: string,
    private readonly bus: EventBus,
    private readonly logger: Logger,
    private readonly sweepMs = 2_000,
  ) {}

  /** add writes an event inside the caller's transaction; call kick() after commit. */
  async add(t: Transaction, topic: string, event: OutgoingEvent): Promise<void> {
    await this.sequelize.query(`insert into ${this.schema}.outbox (topic, key, payload, headers) values (:topic, :key, :payload, :headers)`, {
      replacements: { topic, key: event.key, payload: Buffer.from(event.value), headers: JSON.stringify(event.headers ?? {}) },
      transaction: t,
    });
  }

  /**
   * insertStatement is the outbox insert as SQL with named replacements (all prefixed `outbox_`),
   * for a caller that writes its row and the event in one statement (a data-modifying CTE: atomic
   * without a transaction's extra round trips); call kick() after it succeeded.
   *
   * Options: `from` names a relation of the statement (e.g. a CTE): the event is written once per
   * row of it, so not at all when it is empty (a row the statement did not find). `payloadSql` is
   * an SQL expression for the payload instead of the event's bytes (it may use that relation's
   * columns and the caller's replacements).
   */
  insertStatement(topic: string, event: OutgoingEvent, options: { from?: string; payloadSql?: string } = {}): { sql: string; replacements: Record<string, unknown> } {
    const values = `:outbox_topic, :outbox_key, ${options.payloadSql ?? 'cast(:outbox_payload as bytea)'}, :outbox_headers`;
    const replacements: Record<string, unknown> = { outbox_topic: topic, outbox_key: event.key, outbox_headers: JSON.stringify(event.headers ?? {}) };
    if (!options.payloadSql) replacements.outbox_payload = Buffer.from(event.value);
    return {
      sql: `insert into ${this.schema}.outbox (topic, key, payload, headers) ${options.from ? `select ${values} from ${options.from}` : `values (${values})`}`,
      replacements,
    };
  }

  /** start begins the periodic sweep and publishes what an earlier run left. */
  start(): void {
    this.kick();
    this.timer = setInterval(() => this.kick(), this.sweepMs);
    this.timer.unref();
  }

  /** kick publishes pending events now; concurrent kicks coalesce into one more pass. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.drain()
      .catch((err: unknown) => {
        this.logger.warn('outbox relay failed; will retry', { schema: this.schema, err });
      })
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  /** drain publishes pending rows in id order, deleting each batch after the bus acknowledged it. */
  private async drain(): Promise<void> {
    for (;;) {
      const published = await this.drainBatch();
      if (published < BATCH) return;
    }
  }

  /**
   * drainBatch is one relay pass on a connection of the pool, in two round trips instead of four
   * (BEGIN and the locking read together; the delete and COMMIT together), so that an event leaves
   * one round trip after its row committed. The transaction is the same as before: the batch is
   * locked (a second relay waits, keeping per-key order), published, then exactly its rows are
   * deleted (ids are not committed in order, so a range could remove a row that committed while
   * this batch was being published).
   */
  private async drainBatch(): Promise<number> {
    const manager = this.sequelize.connectionManager;
    const conn = (await manager.getConnection({ type: 'write' })) as unknown as RawConnection;
    let open = false;
    try {
      open = true;
      const res = await conn.query(`begin; select id, topic, key, payload, headers from ${this.schema}.outbox order by id limit ${BATCH} for update`);
      const rows = (Array.isArray(res) ? res[res.length - 1]! : res).rows as OutboxRow[];
      if (rows.length === 0) {
        await conn.query('commit');
        open = false;
        return 0;
      }
      const byTopic = new Map<string, OutgoingEvent[]>();
      for (const r of rows) {
        const list = byTopic.get(r.topic) ?? [];
        list.push({ key: r.key, value: r.payload, headers: r.headers });
        byTopic.set(r.topic, list);
      }
      for (const [topic, events] of byTopic) await this.bus.publish(topic, events);
      const ids = rows.map((r) => Number(r.id));
      if (!ids.every((id) => Number.isSafeInteger(id))) throw new Error('outbox ids must be integers');
      await conn.query(`delete from ${this.schema}.outbox where id in (${ids.join(',')}); commit`);
      open = false;
      return rows.length;
    } finally {
      // A pass that failed midway rolls back: its rows stay and the next pass publishes them again.
      if (open) await conn.query('rollback').catch(() => undefined);
      await manager.releaseConnection(conn as never);
    }
  }

  /** stop ends the sweep and waits for a relay pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
