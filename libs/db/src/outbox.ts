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

/**
 * outboxClaimMigration adds the claim a writer may put on its own row (see Outbox.publishClaimed):
 * until then, relays leave the row to its writer.
 */
export function outboxClaimMigration(schema: string): { id: string; up: string } {
  return { id: 'outbox_claim', up: `alter table ${schema}.outbox add column if not exists claimed_until timestamptz` };
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

  /** Ids of claimed rows published by their writer, deleted together a moment later. */
  private published: number[] = [];
  private deleting: Promise<void> | undefined;
  private deleteTimer: NodeJS.Timeout | undefined;
  /** Claimed rows' publishes under way (stop waits for them). */
  private readonly claimedInFlight = new Set<Promise<void>>();
  private readonly sweepMs: number;
  private readonly claimMs: number;
  private readonly claimWaitMs: number;

  constructor(
    private readonly sequelize: Sequelize,
    private readonly schema: string,
    private readonly bus: EventBus,
    private readonly logger: Logger,
    options: {
      /** How often the relay sweeps for rows nobody published (a crash). */
      sweepMs?: number;
      /** How long a writer's claim keeps relays off its row: after it, a sweep publishes a row its writer did not (a crash). */
      claimMs?: number;
      /** How long publishClaimed waits for the bus before it returns (the publish goes on). */
      claimWaitMs?: number;
    } = {},
  ) {
    this.sweepMs = options.sweepMs ?? 2_000;
    this.claimMs = options.claimMs ?? 10_000;
    this.claimWaitMs = options.claimWaitMs ?? 1_000;
  }

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
   * columns and the caller's replacements). `claim` writes the row claimed by its writer and makes
   * the insert return its id (one row: not with `from`); see publishClaimed.
   */
  insertStatement(
    topic: string,
    event: OutgoingEvent,
    options: { from?: string; payloadSql?: string; claim?: boolean } = {},
  ): { sql: string; replacements: Record<string, unknown> } {
    if (options.claim && options.from) throw new Error('a claimed outbox row is one row: not with `from`');
    const claim = options.claim ? `, now() + make_interval(secs => :outbox_claim_ms / 1000.0)` : '';
    const values = `:outbox_topic, :outbox_key, ${options.payloadSql ?? 'cast(:outbox_payload as bytea)'}, :outbox_headers${claim}`;
    const replacements: Record<string, unknown> = { outbox_topic: topic, outbox_key: event.key, outbox_headers: JSON.stringify(event.headers ?? {}) };
    if (!options.payloadSql) replacements.outbox_payload = Buffer.from(event.value);
    if (options.claim) replacements.outbox_claim_ms = this.claimMs;
    return {
      sql: `insert into ${this.schema}.outbox (topic, key, payload, headers${claim ? ', claimed_until' : ''}) ${options.from ? `select ${values} from ${options.from}` : `values (${values})`}${claim ? ' returning id' : ''}`,
      replacements,
    };
  }

  /**
   * publishClaimed publishes a row its writer claimed (insertStatement with `claim`, its id from
   * the statement's `returning id`) right after the statement committed: the event leaves without
   * the relay's read after the commit (one round trip less before it is on the bus). Only for an
   * event whose key has no other pending row, e.g. a session created by the same statement: other
   * rows of a key are published by the relay, in order, and a claimed row skips that queue.
   *
   * The published row is deleted a moment later (batched, off the caller's path). When the publish
   * fails, the claim is dropped and the relay publishes the row as any other; when this process dies
   * first, a relay's sweep publishes it once the claim has run out. Past the id check it never
   * throws: the row is committed and will be published either way.
   *
   * It resolves when the bus took the event, or after `claimWaitMs` (1 s) if the bus is slower (a
   * Kafka outage, which kafkajs retries for up to ~25 s): the caller's answer is not held for that;
   * the publish goes on, with the same handling of its outcome.
   */
  async publishClaimed(id: number | string, topic: string, event: OutgoingEvent): Promise<void> {
    const rowId = Number(id);
    if (!Number.isSafeInteger(rowId)) throw new Error('outbox ids must be integers');
    const publishing = this.publishOwn(rowId, topic, event);
    this.claimedInFlight.add(publishing);
    void publishing.finally(() => this.claimedInFlight.delete(publishing));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([publishing, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.claimWaitMs)))]);
    clearTimeout(timer);
  }

  /** publishOwn publishes a claimed row and deletes it, or hands it back to the relay; it never rejects. */
  private async publishOwn(rowId: number, topic: string, event: OutgoingEvent): Promise<void> {
    try {
      await this.bus.publish(topic, [event]);
    } catch (err) {
      this.logger.warn('claimed outbox event not published; left to the relay', { schema: this.schema, topic, err });
      await this.sequelize
        .query(`update ${this.schema}.outbox set claimed_until = null where id = :id`, { replacements: { id: rowId } })
        .catch((e: unknown) => {
          this.logger.warn('outbox claim not released; a sweep publishes the row after it', { schema: this.schema, err: e });
        });
      this.kick();
      return;
    }
    this.published.push(rowId);
    this.deleteTimer ??= setTimeout(() => void this.deletePublished(), 50).unref();
  }

  /** deletePublished deletes the claimed rows published so far (a failure leaves them to a sweep after their claim: a duplicate, not a loss). */
  private async deletePublished(): Promise<void> {
    clearTimeout(this.deleteTimer);
    this.deleteTimer = undefined;
    await this.deleting;
    const ids = this.published;
    this.published = [];
    if (ids.length === 0) return;
    this.deleting = this.sequelize
      .query(`delete from ${this.schema}.outbox where id in (${ids.join(',')})`)
      .then(
        () => undefined,
        (err: unknown) => {
          this.logger.warn('published outbox rows not deleted; a sweep publishes them again after their claim', { schema: this.schema, err });
        },
      );
    await this.deleting;
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
      // A row its writer claimed is its writer's to publish (publishClaimed) until the claim runs out.
      const res = await conn.query(
        `begin; select id, topic, key, payload, headers from ${this.schema}.outbox where claimed_until is null or claimed_until < now() order by id limit ${BATCH} for update`,
      );
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
    await Promise.all(this.claimedInFlight);
    await this.deletePublished();
  }
}
