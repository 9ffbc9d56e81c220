import { QueryTypes, type Sequelize } from '@chat/db';
import type { Logger } from '@chat/logger';

/** A reply event as stored: the encoded chat.events.v1.ReplyEvent under its session and seq. */
export interface StoredReplyEvent {
  sessionId: string;
  seq: number;
  payload: Uint8Array;
}

/** Most events one insert statement carries (a flush takes several statements beyond it). */
const MAX_BATCH = 500;

interface Pending extends StoredReplyEvent {
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * ReplyEventStore keeps every reply event of every session for a retention period, so a WebSocket
 * `resume` can be served by any gateway instance, also after a restart. Writes are group-committed:
 * `append` resolves once its event is stored, and every event appended while a flush is in flight
 * goes into the next single multi-row insert (the reply consumer handles partitions concurrently,
 * so under load one statement carries the events of many sessions). Redelivered events change
 * nothing (primary key session_id, seq); events of deleted sessions are dropped.
 */
export class ReplyEventStore {
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;

  constructor(
    private readonly sequelize: Sequelize,
    private readonly logger?: Logger,
  ) {}

  /** append stores one event; it resolves when the event (or an earlier copy of it) is durable. */
  append(event: StoredReplyEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ ...event, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    // Let the handlers that run in this same tick add their events to the first batch.
    await Promise.resolve();
    try {
      while (this.pending.length > 0) {
        const batch = this.pending.splice(0, MAX_BATCH);
        try {
          await this.insert(batch);
          for (const p of batch) p.resolve();
        } catch (err) {
          for (const p of batch) p.reject(err);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  private async insert(batch: StoredReplyEvent[]): Promise<void> {
    const bind: unknown[] = [];
    const rows = batch.map((e) => {
      bind.push(e.sessionId, e.seq, Buffer.from(e.payload.buffer, e.payload.byteOffset, e.payload.byteLength));
      const n = bind.length;
      return `($${n - 2}::uuid, $${n - 1}::bigint, $${n}::bytea)`;
    });
    // One statement: the events (only for sessions that still exist), and each session's last_seq
    // moved forward, so a restarted scheduler continues numbering after the newest stored event.
    await this.sequelize.query(
      `with v(session_id, seq, payload) as (values ${rows.join(', ')}),
       ins as (
         insert into session.reply_events (session_id, seq, payload)
         select v.session_id, v.seq, v.payload from v join session.sessions s on s.id = v.session_id
         on conflict do nothing
       )
       update session.sessions s set last_seq = m.seq
       from (select session_id, max(seq) as seq from v group by session_id) m
       where s.id = m.session_id and s.last_seq < m.seq`,
      { bind },
    );
  }

  /** list returns up to `limit` events of a session with seq > afterSeq in seq order, and the oldest stored seq. */
  async list(sessionId: string, afterSeq: number, limit: number): Promise<{ events: StoredReplyEvent[]; hasMore: boolean; oldestSeq: number }> {
    const rows = await this.sequelize.query<{ seq: string | number; payload: Buffer | null; oldest: string | number | null }>(
      `select e.seq, e.payload, (select min(seq) from session.reply_events where session_id = :session) as oldest
       from session.reply_events e where e.session_id = :session and e.seq > :after order by e.seq limit :limit`,
      { replacements: { session: sessionId, after: afterSeq, limit: limit + 1 }, type: QueryTypes.SELECT },
    );
    let oldestSeq = Number(rows[0]?.oldest ?? 0);
    if (rows.length === 0) {
      const r = await this.sequelize.query<{ oldest: string | number | null }>('select min(seq) as oldest from session.reply_events where session_id = :session', {
        replacements: { session: sessionId },
        type: QueryTypes.SELECT,
      });
      oldestSeq = Number(r[0]?.oldest ?? 0);
    }
    const events = rows.slice(0, limit).map((r) => ({ sessionId, seq: Number(r.seq), payload: new Uint8Array(r.payload ?? Buffer.alloc(0)) }));
    return { events, hasMore: rows.length > limit, oldestSeq };
  }

  /** deleteOlderThan removes events stored before `cutoff`, in bounded chunks; returns how many went. */
  async deleteOlderThan(cutoff: Date, chunk = 10_000): Promise<number> {
    let total = 0;
    for (let i = 0; i < 1_000; i++) {
      const rows = await this.sequelize.query(
        `delete from session.reply_events where ctid in (select ctid from session.reply_events where created_at < :cutoff limit :chunk) returning 1 as x`,
        { replacements: { cutoff, chunk }, type: QueryTypes.SELECT },
      );
      const n = rows.length;
      total += n;
      if (n < chunk) break;
    }
    if (total > 0) this.logger?.info('expired reply events deleted', { events: total });
    return total;
  }

  /** close waits for the events already appended to be written. */
  async close(): Promise<void> {
    while (this.flushing) await this.flushing;
  }
}
