import { QueryTypes, type Sequelize, type Transaction } from 'sequelize';
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
      const published = await this.sequelize.transaction(async (t) => {
        // Lock the batch so that two relays (replicas) never publish the same rows concurrently;
        // NOWAIT-free: a second relay simply waits, keeping per-key order.
        const rows = await this.sequelize.query<OutboxRow>(
          `select id, topic, key, payload, headers from ${this.schema}.outbox order by id limit 200 for update`,
          { type: QueryTypes.SELECT, transaction: t },
        );
        if (rows.length === 0) return 0;
        const byTopic = new Map<string, OutgoingEvent[]>();
        for (const r of rows) {
          const list = byTopic.get(r.topic) ?? [];
          list.push({ key: r.key, value: r.payload, headers: r.headers });
          byTopic.set(r.topic, list);
        }
        for (const [topic, events] of byTopic) await this.bus.publish(topic, events);
        // Delete exactly the rows published: ids are not committed in order, so a range could
        // remove a row that committed while this batch was being published.
        await this.sequelize.query(`delete from ${this.schema}.outbox where id in (:ids)`, {
          replacements: { ids: rows.map((r) => r.id) },
          transaction: t,
        });
        return rows.length;
      });
      if (published < 200) return;
    }
  }

  /** stop ends the sweep and waits for a relay pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.running;
  }
}
