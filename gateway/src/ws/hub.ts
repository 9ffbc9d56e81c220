import { AppError, Code, errorBody } from '@chat/errors';
import type { Logger } from '@chat/logger';
import { eventsV1 } from '@chat/contracts';
import { WebSocket } from 'ws';
import type { SessionApi } from '../deps.js';
import { replyFrame, type ReplyFrame } from './frames.js';

/** One open WebSocket of one owner on one session. */
export interface Client {
  ws: WebSocket;
  owner: string;
  session: string;
  alive: boolean;
}

export interface HubOptions {
  logger: Logger;
  /** bufferedAmount above which a slow client is closed with 1013. */
  maxBufferedBytes: number;
  heartbeatMs: number;
  /** Reply frames kept per session for `resume`. */
  historyPerSession?: number;
  /** Sessions whose recent frames are kept (least recently used go first). */
  historySessions?: number;
  /**
   * How long a subscriber waits for the durable store to fill a gap in its seq sequence (events
   * this gateway did not see, or saw before the store did) before it reports resume_gap and moves on.
   */
  gapWaitMs?: number;
}

/** The durable store of reply events, as the session service serves it (ListReplyEvents). */
export type ReplyEventSource = Pick<SessionApi, 'listReplyEvents' | 'getSession'>;

/**
 * A subscriber to one session's reply frames: a WebSocket, a Connect stream or an OpenAI-compatible
 * stream. The hub delivers to it in seq order without gap or duplicate once it has a cursor.
 */
export interface ReplySubscriber {
  readonly session: string;
  readonly owner: string;
  /** Writes one frame (and, for `error`, a problem the subscriber should see). */
  write(frame: ReplyFrame): void;
  /** Tells the subscriber about a gap that could not be filled. */
  problem?(err: AppError): void;
}

/** The hub's delivery state of one subscriber. */
interface Sink {
  sub: ReplySubscriber;
  /** Highest seq delivered (or declared seen by resume); undefined until the first frame. */
  cursor: number | undefined;
  /** Live frames held back while the sink catches up from the buffer or the store. */
  held: ReplyFrame[] | undefined;
  /** Where stored events come from when the ring buffer cannot fill a gap. */
  source: ReplyEventSource | undefined;
  /** Set by a resume that arrives while a catch-up runs: that catch-up must ask the store again. */
  rewound: boolean;
  closed: boolean;
}

const PAGE = 500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * SocketHub knows every reply subscriber per session (WebSockets, Connect and OpenAI streams), fans
 * reply events out to them, keeps a ring buffer of each session's recent reply frames, and runs
 * WebSocket heartbeats.
 *
 * Ordering: every subscriber has a cursor (the last seq it got). A frame at or below the cursor is
 * a duplicate and dropped; a frame beyond cursor + 1 means a gap (events this gateway never saw,
 * e.g. published before it started, or a `resume` from an older seq): live frames are then held,
 * the missing ones are read from the ring buffer or else from the session service's durable store
 * (ListReplyEvents), and the held frames follow — so a resumed stream has no gap and no duplicate,
 * on any gateway instance and after a restart (docs/decisions/0016-durable-reply-events.md).
 */
export class SocketHub {
  private readonly bySession = new Map<string, Set<Sink>>();
  private readonly clients = new Map<Client, Sink>();
  private readonly history = new Map<string, ReplyFrame[]>();
  /**
   * The seq of the final frame (completed/failed) of recent replies, least recently used first: a
   * second final frame of one reply under another seq is never shown (decision 0018). It is kept in
   * the sequence as a silent frame: it moves subscribers' cursors, so nobody waits for its seq.
   */
  private readonly finals = new Map<string, number>();
  /** Frames that only move cursors (a dropped second final); never written to a subscriber. */
  private readonly silent = new WeakSet<ReplyFrame>();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(private readonly options: HubOptions) {}

  /** size counts open WebSockets. */
  get size(): number {
    return this.clients.size;
  }

  /** add registers a WebSocket; it receives the session's live frames from now on. */
  add(client: Client): void {
    const sink = this.attach({
      session: client.session,
      owner: client.owner,
      write: (frame) => this.send(client, frame),
      problem: (err) => this.send(client, { type: 'error', error: errorBody(err).error }),
    });
    this.clients.set(client, sink);
  }

  remove(client: Client): void {
    const sink = this.clients.get(client);
    if (!sink) return;
    this.clients.delete(client);
    this.detach(sink);
  }

  /** send writes one frame, closing the socket with 1013 when the client does not keep up. */
  send(client: Client, frame: object): void {
    const { ws } = client;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > this.options.maxBufferedBytes) {
      this.options.logger.warn('closing a slow websocket client', { session: client.session, buffered_bytes: ws.bufferedAmount });
      ws.close(1013, 'client too slow; reconnect and resume');
      return;
    }
    ws.send(JSON.stringify(frame));
  }

  /**
   * resume makes a WebSocket receive every reply frame after lastSeq, in order, then the live ones.
   * Frames already sent to this socket after lastSeq are sent again: the client said it has not
   * seen them. Call it in the same tick as `add` (as the `last_seq` query parameter does) for a
   * resume with no race at all.
   */
  resume(client: Client, lastSeq: number, source?: ReplyEventSource): Promise<void> {
    const sink = this.clients.get(client);
    if (!sink) return Promise.resolve();
    return this.rewind(sink, lastSeq, source);
  }

  /**
   * subscribe registers a non-WebSocket subscriber (Connect stream, OpenAI stream). With afterSeq
   * it first gets every stored frame after that seq; without it only live frames (from `cursor` on,
   * when given: a gap after it is filled from the store).
   */
  subscribe(sub: ReplySubscriber, options: { afterSeq?: number; cursor?: number; source?: ReplyEventSource } = {}): { close(): void; ready: Promise<void> } {
    const sink = this.attach(sub);
    sink.source = options.source;
    // A known cursor without a resume (e.g. 0 on a brand-new session): gaps are filled, nothing is replayed.
    if (options.cursor !== undefined) sink.cursor = options.cursor;
    const ready = options.afterSeq === undefined ? Promise.resolve() : this.rewind(sink, options.afterSeq, options.source);
    return { close: () => this.detach(sink), ready };
  }

  private attach(sub: ReplySubscriber): Sink {
    const sink: Sink = { sub, cursor: undefined, held: undefined, source: undefined, rewound: false, closed: false };
    const set = this.bySession.get(sub.session) ?? new Set<Sink>();
    set.add(sink);
    this.bySession.set(sub.session, set);
    return sink;
  }

  private detach(sink: Sink): void {
    sink.closed = true;
    const set = this.bySession.get(sink.sub.session);
    if (!set) return;
    set.delete(sink);
    if (set.size === 0) this.bySession.delete(sink.sub.session);
  }

  /** publish records a reply event and delivers its frame to every subscriber of its session. */
  publish(event: eventsV1.ReplyEvent): void {
    // A replayed dead letter runs its failed reply again: its next final is the one that counts.
    if (event.reopened) this.finals.delete(event.replyId);
    const frame = replyFrame(event) ?? (event.seq > 0 ? this.silentFrame(event) : undefined);
    if (!frame || !event.sessionId) return;
    if (frame.type !== 'reply.delta' && event.seq > 0) {
      const first = this.finals.get(frame.reply_id);
      if (first === undefined) {
        this.finals.set(frame.reply_id, frame.seq);
        while (this.finals.size > 10_000) this.finals.delete(this.finals.keys().next().value!);
      } else if (first !== frame.seq) {
        this.options.logger.warn('second final event of a reply dropped', { reply_id: frame.reply_id, seq: frame.seq, first_seq: first });
        this.silent.add(frame);
      }
    }
    if (!this.remember(event.sessionId, frame)) return; // a redelivered event: already sent
    for (const sink of this.bySession.get(event.sessionId) ?? []) {
      if (event.ownerId && sink.sub.owner !== event.ownerId) continue;
      this.offer(sink, frame);
    }
  }

  /** offer delivers one live frame to one sink, keeping its seq order (see the class comment). */
  private offer(sink: Sink, frame: ReplyFrame): void {
    if (sink.closed) return;
    if (sink.held) {
      sink.held.push(frame);
      return;
    }
    if (frame.seq > 0 && sink.cursor !== undefined) {
      if (frame.seq <= sink.cursor) return;
      if (frame.seq > sink.cursor + 1 && sink.source?.listReplyEvents) {
        sink.held = [frame];
        void this.catchUp(sink, false);
        return;
      }
    }
    this.deliver(sink, frame);
  }

  private deliver(sink: Sink, frame: ReplyFrame): void {
    if (frame.seq > 0) sink.cursor = frame.seq;
    if (!this.silent.has(frame)) sink.sub.write(frame);
  }

  /** silentFrame stands for an event without a frame (a tombstone) that still holds its seq. */
  private silentFrame(event: eventsV1.ReplyEvent): ReplyFrame {
    const frame: ReplyFrame = { type: 'reply.delta', reply_id: event.replyId, seq: event.seq, text: '' };
    this.silent.add(frame);
    return frame;
  }

  /** rewind sets a sink's cursor back to lastSeq and catches it up (buffer, else store), holding live frames meanwhile. */
  private async rewind(sink: Sink, lastSeq: number, source: ReplyEventSource | undefined): Promise<void> {
    if (source) sink.source = source;
    sink.cursor = lastSeq;
    if (sink.held !== undefined) {
      // A catch-up is running: it picks the new cursor up and asks the store again.
      sink.rewound = true;
      return;
    }
    sink.held = [];
    await this.catchUp(sink, true);
  }

  /**
   * catchUp delivers what a sink misses after its cursor, then its held live frames, and releases
   * it. `resume` is true for an explicit resume: then the store is asked unless the ring buffer
   * reaches back to the cursor (it then holds everything this gateway saw after it).
   */
  private async catchUp(sink: Sink, resume: boolean): Promise<void> {
    const { session, owner } = sink.sub;
    const started = Date.now();
    const gapWaitMs = this.options.gapWaitMs ?? 2_000;
    const ringFirst = this.history.get(session)?.[0]?.seq;
    let askStore = resume && !(ringFirst !== undefined && ringFirst <= sink.cursor! + 1);
    try {
      for (let round = 0; round < 100_000 && !sink.closed; round++) {
        if (sink.rewound) {
          sink.rewound = false;
          askStore = true;
        }
        const next = this.drainLocal(sink);
        if (next === undefined && !askStore) break;
        if (!sink.source?.listReplyEvents) {
          await this.legacyGap(sink, next);
          askStore = false;
          continue;
        }
        if (!askStore && next !== undefined && round > 0) {
          // A gap the store did not fill yet (it lags the live stream by a flush): wait, bounded.
          if (Date.now() - started > gapWaitMs) {
            sink.sub.problem?.(gapError(sink.cursor!, next));
            sink.cursor = next - 1;
            continue;
          }
          await sleep(Math.min(100, 5 * round));
        }
        const page = await sink.source.listReplyEvents({ ownerId: owner, sessionId: session, afterSeq: sink.cursor!, limit: PAGE });
        const first = page.events[0];
        if (first && first.seq > sink.cursor! + 1 && page.oldestSeq === first.seq) {
          // Retention removed some: say so, then continue from the oldest kept event.
          sink.sub.problem?.(gapError(sink.cursor!, first.seq));
          sink.cursor = first.seq - 1;
        }
        for (const e of page.events) {
          if (e.seq !== sink.cursor! + 1) continue;
          // A stored tombstone (a dropped second final, decision 0018) only moves the cursor.
          this.deliver(sink, replyFrame(e) ?? this.silentFrame(e));
        }
        askStore = page.hasMore;
      }
    } catch (err) {
      this.options.logger.warn('reply catch-up failed', { session, err });
      sink.sub.problem?.(err instanceof AppError && err.code !== Code.Internal ? err : AppError.unavailable('the reply history is not available right now; resume again'));
      // Go on live with what is held, never stall the subscriber.
      const held = (sink.held ?? []).filter((f) => sink.cursor === undefined || f.seq > sink.cursor).sort((a, b) => a.seq - b.seq);
      sink.held = undefined;
      for (const f of held) this.deliver(sink, f);
      return;
    }
    sink.held = undefined;
  }

  /**
   * drainLocal delivers the frames that continue a sink's sequence from the ring buffer and its
   * held frames; it returns the lowest known seq beyond a gap (undefined when none is known).
   */
  private drainLocal(sink: Sink): number | undefined {
    const known = new Map<number, ReplyFrame>();
    for (const f of this.history.get(sink.sub.session) ?? []) if (f.seq > sink.cursor!) known.set(f.seq, f);
    for (const f of sink.held ?? []) if (f.seq > sink.cursor!) known.set(f.seq, f);
    for (let f = known.get(sink.cursor! + 1); f; f = known.get(sink.cursor! + 1)) this.deliver(sink, f);
    sink.held = (sink.held ?? []).filter((f) => f.seq > sink.cursor!);
    let next: number | undefined;
    for (const seq of known.keys()) if (seq > sink.cursor! && (next === undefined || seq < next)) next = seq;
    return next;
  }

  /** legacyGap: without a durable store, missed frames the buffer cannot serve are reported as resume_gap. */
  private async legacyGap(sink: Sink, next: number | undefined): Promise<void> {
    if (next !== undefined) {
      sink.sub.problem?.(gapError(sink.cursor!, next));
      sink.cursor = next - 1;
      return;
    }
    const res = await sink.source?.getSession({ ownerId: sink.sub.owner, id: sink.sub.session, recentLimit: 1 });
    if ((res?.session?.lastSeq ?? 0) > sink.cursor!) sink.sub.problem?.(gapError(sink.cursor!, null));
  }

  /** remember appends to the session's ring buffer; false for a duplicate (seq already seen). */
  private remember(session: string, frame: ReplyFrame): boolean {
    const max = this.options.historyPerSession ?? 256;
    const frames = this.history.get(session) ?? [];
    const last = frames[frames.length - 1];
    if (frame.seq > 0 && last && frame.seq <= last.seq) return false;
    frames.push(frame);
    if (frames.length > max) frames.splice(0, frames.length - max);
    // Re-insert so the Map's order is least recently used first.
    this.history.delete(session);
    this.history.set(session, frames);
    const sessions = this.options.historySessions ?? 1000;
    while (this.history.size > sessions) this.history.delete(this.history.keys().next().value!);
    return true;
  }

  /**
   * replay returns the buffered frames after lastSeq and whether they are complete: complete
   * means the buffer reaches back to lastSeq + 1 (or nothing was missed, as far as known).
   */
  replay(session: string, lastSeq: number, knownLastSeq?: number): { frames: ReplyFrame[]; complete: boolean } {
    const all = (this.history.get(session) ?? []).filter((f) => f.seq > lastSeq);
    const first = all[0];
    const frames = all.filter((f) => !this.silent.has(f));
    const newest = Math.max(knownLastSeq ?? 0, all[all.length - 1]?.seq ?? 0);
    const complete = newest <= lastSeq || (first !== undefined && first.seq <= lastSeq + 1);
    return { frames, complete };
  }

  /** startHeartbeat pings every socket each period and terminates the ones that missed a pong. */
  startHeartbeat(): void {
    this.heartbeat ??= setInterval(() => {
      for (const client of this.clients.keys()) {
        if (!client.alive) {
          client.ws.terminate();
          continue;
        }
        client.alive = false;
        client.ws.ping();
      }
    }, this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  /** closeAll closes every socket (1001 at shutdown) and terminates those that do not finish in graceMs. */
  async closeAll(code: number, reason: string, graceMs = 1_000): Promise<void> {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const clients = [...this.clients.keys()];
    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.ws.readyState === WebSocket.CLOSED) return resolve();
            const timer = setTimeout(() => {
              c.ws.terminate();
              resolve();
            }, graceMs);
            c.ws.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            c.ws.close(code, reason);
          }),
      ),
    );
    for (const sink of this.clients.values()) this.detach(sink);
    this.clients.clear();
  }
}

/** gapError is the resume_gap problem: events after lastSeq (up to before nextSeq) are gone. */
function gapError(lastSeq: number, nextSeq: number | null): AppError {
  return new AppError(Code.OutOfRange, 'some reply events after last_seq are no longer available; reload the history with GET /api/sessions/{id}/messages', {
    reason: 'resume_gap',
    details: { last_seq: lastSeq, next_seq: nextSeq },
  });
}
