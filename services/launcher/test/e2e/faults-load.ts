import assert from 'node:assert/strict';
import { Partitioners } from 'kafkajs';
import WebSocket from 'ws';
import { Api, openSocket, StopWaiting, waitFor } from './harness.js';

/** Sent is a user message the API acknowledged (202). */
export interface Sent {
  index: number;
  content: string;
  messageId: string;
  replyId: string;
}

/** A reply frame as the gateway sends it. */
interface ReplyFrame {
  type: 'reply.delta' | 'reply.completed' | 'reply.failed';
  reply_id: string;
  seq: number;
  text?: string;
  content?: string;
  error?: { code: string; message: string };
}

const isFinal = (f: { type: string }) => f.type === 'reply.completed' || f.type === 'reply.failed';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The filler that makes each development-model reply a dozen streamed chunks long. */
const FILLER = 'please answer slowly about the harbour the lighthouse the tides the ferries the market and the old stone bridge';

/**
 * Conversation is one session driven like a real client: user messages over REST with an
 * Idempotency-Key (retried with the same key until acknowledged), and a WebSocket that reconnects
 * with a fresh ws_token and `resume`s from the last seq it saw. It records every frame.
 */
export class Conversation {
  readonly sent: Sent[] = [];
  /** Reply frames by seq (the first arrival of each seq). */
  readonly bySeq = new Map<number, ReplyFrame>();
  /** Every reply frame in arrival order, duplicates included. */
  readonly arrivals: ReplyFrame[] = [];
  /** `error` frames the socket received (e.g. resume_gap). */
  readonly errors: unknown[] = [];
  lastSeq = 0;
  reconnects = 0;
  private ws: WebSocket | undefined;
  private closed = false;
  private connecting: Promise<void> | undefined;

  constructor(
    readonly api: Api,
    readonly wsBase: string,
    readonly sessionId: string,
    readonly label: string,
  ) {}

  /** connect opens the socket (a fresh single-use ws_token each time) and resumes after lastSeq. */
  connect(deadlineMs = 60_000): Promise<void> {
    this.connecting ??= this.open(deadlineMs).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(deadlineMs: number): Promise<void> {
    const ws = await waitFor(
      `a socket for ${this.label}`,
      async () => {
        if (this.closed) return undefined;
        const tok = await this.api.call('POST', `/api/sessions/${this.sessionId}/ws_token`);
        if (tok.status !== 200) throw new Error(`ws_token: ${tok.status} ${JSON.stringify(tok.body)}`);
        return openSocket(this.wsBase, this.sessionId, tok.body.ws_token);
      },
      deadlineMs,
      250,
    );
    ws.on('message', (data) => this.onFrame(JSON.parse(data.toString())));
    ws.on('error', () => {});
    ws.on('close', () => {
      if (this.ws !== ws || this.closed) return;
      // The server went away: reconnect and resume, as a client would.
      this.ws = undefined;
      void this.connect().catch(() => {});
    });
    this.ws = ws;
    if (this.lastSeq > 0) ws.send(JSON.stringify({ type: 'resume', last_seq: this.lastSeq }));
  }

  private onFrame(f: { type: string; seq?: number; error?: unknown }): void {
    if (f.type === 'error') {
      this.errors.push(f.error);
      return;
    }
    if (!f.type.startsWith('reply.') || typeof f.seq !== 'number') return;
    const frame = f as ReplyFrame;
    this.arrivals.push(frame);
    if (!this.bySeq.has(frame.seq)) this.bySeq.set(frame.seq, frame);
    this.lastSeq = Math.max(this.lastSeq, frame.seq);
  }

  /** reconnect drops the socket (as a flaky network would) and connects again with `resume`. */
  async reconnect(): Promise<void> {
    const old = this.ws;
    this.ws = undefined;
    old?.terminate();
    this.reconnects++;
    await this.connect();
  }

  /** send posts message `index` and retries with the same Idempotency-Key until it is acknowledged. */
  async send(index: number, deadlineMs = 90_000): Promise<Sent> {
    const content = `${this.label} message ${index}: ${FILLER}`;
    const res = await waitFor(
      `message ${index} of ${this.label} to be accepted`,
      async () => {
        const r = await this.api.call('POST', `/api/sessions/${this.sessionId}/messages`, { content }, { 'idempotency-key': `${this.label}-m${index}` });
        // 5xx (a service restarting) is retried with the same key; a 4xx is a test bug.
        if (r.status >= 500) throw new Error(`${r.status} ${JSON.stringify(r.body)}`);
        if (r.status !== 202) throw new StopWaiting(`${r.status} ${JSON.stringify(r.body)}`);
        return r.body as { message_id: string; reply_id: string };
      },
      deadlineMs,
      200,
    );
    const sent = { index, content, messageId: res.message_id, replyId: res.reply_id };
    this.sent.push(sent);
    return sent;
  }

  /** framesOf are the distinct frames (by seq) of one reply, in seq order. */
  framesOf(replyId: string): ReplyFrame[] {
    return [...this.bySeq.values()].filter((f) => f.reply_id === replyId).sort((a, b) => a.seq - b.seq);
  }

  /** streaming tells whether some reply has streamed deltas but has no final frame yet. */
  streaming(): boolean {
    return this.sent.some((s) => {
      const fs = this.framesOf(s.replyId);
      return fs.some((f) => f.type === 'reply.delta') && !fs.some(isFinal);
    });
  }

  /** finals counts the replies with a final frame. */
  finals(): number {
    return this.sent.filter((s) => this.framesOf(s.replyId).some(isFinal)).length;
  }

  close(): void {
    this.closed = true;
    this.ws?.terminate();
  }
}

/** openConversations creates `count` sessions of one persona and connects a client to each. */
export async function openConversations(api: Api, wsBase: string, personaId: string, label: string, count: number): Promise<Conversation[]> {
  const out: Conversation[] = [];
  for (let i = 0; i < count; i++) {
    const s = await api.call('POST', '/api/sessions', { persona_id: personaId, title: `${label}-${i}` });
    assert.equal(s.status, 201, JSON.stringify(s.body));
    out.push(new Conversation(api, wsBase, s.body.id, `${label}-s${i}`));
  }
  await Promise.all(out.map((c) => c.connect()));
  return out;
}

/** partitionOf is the partition the bus's producer (kafkajs' default, Java-compatible murmur2) puts a session's events on. */
export function partitionOf(sessionId: string, partitions: number): number {
  const partitioner = Partitioners.DefaultPartitioner();
  const partitionMetadata = Array.from({ length: partitions }, (_, i) => ({ partitionId: i, leader: 1, replicas: [1], isr: [1], partitionErrorCode: 0 }));
  return partitioner({ topic: 'chat.messages.v1', partitionMetadata, message: { key: sessionId, value: null } });
}

/**
 * openCoveringConversations opens at least `count` conversations, more if needed (at most 40) so
 * that every one of `partitions` partitions carries at least one session: a rebalance then always
 * moves sessions that are busy.
 */
export async function openCoveringConversations(api: Api, wsBase: string, personaId: string, label: string, count: number, partitions: number): Promise<Conversation[]> {
  const out: Conversation[] = [];
  const covered = new Set<number>();
  for (let i = 0; i < 40 && (out.length < count || covered.size < partitions); i++) {
    const s = await api.call('POST', '/api/sessions', { persona_id: personaId, title: `${label}-${i}` });
    assert.equal(s.status, 201, JSON.stringify(s.body));
    const p = partitionOf(s.body.id, partitions);
    // Beyond `count`, keep only sessions of partitions not covered yet.
    if (out.length >= count && covered.has(p)) continue;
    covered.add(p);
    out.push(new Conversation(api, wsBase, s.body.id, `${label}-s${i}`));
  }
  assert.equal(covered.size, partitions, 'sessions on every partition');
  await Promise.all(out.map((c) => c.connect()));
  return out;
}

/** busyPartitions is the set of partitions whose sessions have a reply mid-stream. */
export function busyPartitions(convs: Conversation[], partitions: number): Set<number> {
  const ids = new Set(midStream(convs));
  return new Set(convs.filter((c) => c.sent.some((s) => ids.has(s.replyId))).map((c) => partitionOf(c.sessionId, partitions)));
}

/**
 * sendLoad sends `perSession` messages in every conversation: sessions in parallel, each session's
 * messages one after the other, `gapMs` apart (without waiting for replies, so they queue up).
 */
export async function sendLoad(convs: Conversation[], perSession: number, gapMs: number): Promise<void> {
  await Promise.all(
    convs.map(async (c) => {
      const first = c.sent.length;
      for (let i = first; i < first + perSession; i++) {
        await c.send(i);
        if (i < first + perSession - 1) await sleep(gapMs);
      }
    }),
  );
}

/**
 * Load keeps every conversation busy until stopped, like users who type while a reply streams:
 * each session sends its next message as soon as fewer than `outstanding` of its replies are
 * unfinished (so a small queue is always waiting behind the running reply), `gapMs` apart, at most
 * `max` messages per session.
 */
export class Load {
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    convs: Conversation[],
    private readonly options: { outstanding: number; max: number; gapMs: number; timeoutMs?: number },
  ) {
    this.done = Promise.all(convs.map((c) => this.drive(c))).then(() => undefined);
    this.done.catch(() => {}); // surfaced by stop()
  }

  private async drive(c: Conversation): Promise<void> {
    const unfinished = () => c.sent.filter((s) => !c.framesOf(s.replyId).some(isFinal)).length;
    while (!this.stopped && c.sent.length < this.options.max) {
      await waitFor(`${c.label} to have fewer than ${this.options.outstanding} unfinished replies`, async () => (this.stopped || unfinished() < this.options.outstanding ? true : undefined), this.options.timeoutMs ?? 120_000, 25);
      if (this.stopped) return;
      await c.send(c.sent.length);
      await sleep(this.options.gapMs);
    }
  }

  /** stop ends sending (messages in flight are still acknowledged) and rethrows a sender's failure. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

/** finalsNow counts the replies with a final frame over all conversations. */
export function finalsNow(convs: Conversation[]): number {
  return convs.reduce((k, c) => k + c.finals(), 0);
}

/** midStream lists the replies that have streamed deltas but have no final frame yet. */
export function midStream(convs: Conversation[]): string[] {
  return convs.flatMap((c) =>
    c.sent
      .filter((s) => {
        const fs = c.framesOf(s.replyId);
        return fs.some((f) => f.type === 'reply.delta') && !fs.some(isFinal);
      })
      .map((s) => s.replyId),
  );
}

/** unfinished lists the replies whose final frame the clients have not seen yet. */
export function unfinished(convs: Conversation[]): string[] {
  return convs.flatMap((c) => c.sent.filter((s) => !c.framesOf(s.replyId).some(isFinal)).map((s) => s.replyId));
}

/** failedReplies lists the replies whose final frame was reply.failed, with the failure code. */
export function failedReplies(convs: Conversation[]): Array<{ label: string; index: number; replyId: string; code: string }> {
  return convs.flatMap((c) =>
    c.sent.flatMap((s) => {
      const fin = c.framesOf(s.replyId).find(isFinal);
      return fin?.type === 'reply.failed' ? [{ label: c.label, index: s.index, replyId: s.replyId, code: fin.error?.code ?? '' }] : [];
    }),
  );
}

/** endings tells how the given replies ended on the clients (after checkConversations): `completed` or the failure code. */
export function endings(convs: Conversation[], replyIds: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of replyIds) {
    const c = convs.find((x) => x.sent.some((s) => s.replyId === id));
    const fin = c?.framesOf(id).find(isFinal);
    const k = !fin ? 'none' : fin.type === 'reply.completed' ? 'completed' : (fin.error?.code ?? 'failed');
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** untilStreaming waits until some reply is mid-stream (deltas seen, no final yet). */
export async function untilStreaming(convs: Conversation[], timeoutMs = 30_000): Promise<void> {
  await waitFor('a reply to be mid-stream', async () => (convs.some((c) => c.streaming()) ? true : undefined), timeoutMs, 20);
}

/** untilFinals waits until at least n replies (over all conversations) have a final frame. */
export async function untilFinals(convs: Conversation[], n: number, timeoutMs = 60_000): Promise<void> {
  await waitFor(`${n} replies to finish`, async () => (convs.reduce((k, c) => k + c.finals(), 0) >= n ? true : undefined), timeoutMs, 50);
}

interface StoredMessage {
  id: string;
  role: 'user' | 'assistant';
  content: string;
  status: string;
  reply_id?: string;
  reply_to?: string;
  error?: string;
}

async function storedMessages(c: Conversation): Promise<StoredMessage[]> {
  const r = await c.api.call('GET', `/api/sessions/${c.sessionId}/messages?limit=200`);
  if (r.status !== 200) throw new Error(`GET messages: ${r.status} ${JSON.stringify(r.body)}`);
  assert.equal(r.body.has_more, false, 'a fault test session holds at most 200 messages');
  return r.body.messages as StoredMessage[];
}

/** Outcome counts what the checked replies ended as. */
export interface Outcome {
  replies: number;
  completed: number;
  failed: number;
  /** Failure codes seen, with counts. */
  failures: Record<string, number>;
}

const FINAL_STATUSES = new Set(['completed', 'failed']);

/**
 * checkConversations is the one checker of every fault scenario. It waits (at most boundMs) until
 * every acknowledged message's reply is final in the store and its client has seen the final
 * frame, then asserts:
 * - no acknowledged message lost, none stored twice, no user message that was not acknowledged;
 * - exactly one assistant message per user message (its reply id, its reply_to), final
 *   (completed or failed), and a completed one answers its own message;
 * - per-session order: stored turns alternate user, assistant in send order, and the client saw the
 *   replies finish in send order, each reply's frames after the previous reply's final frame;
 * - exactly one final frame per reply on the client (never a completed and a failed, never two),
 *   agreeing with the store, no seq delivered out of order or twice after a resume, no resume gap.
 */
export async function checkConversations(convs: Conversation[], boundMs: number): Promise<Outcome> {
  const missing = async (): Promise<string[]> => {
    const problems: string[] = [];
    for (const c of convs) {
      const stored = new Map((await storedMessages(c)).map((m) => [m.id, m]));
      for (const s of c.sent) {
        const row = stored.get(s.replyId);
        if (!row || !FINAL_STATUSES.has(row.status)) problems.push(`${c.label} #${s.index}: stored reply is ${row?.status ?? 'missing'}`);
        if (!c.framesOf(s.replyId).some(isFinal)) problems.push(`${c.label} #${s.index}: the client saw no final frame (last seq ${c.lastSeq})`);
      }
    }
    return problems;
  };
  let last: string[] = [];
  try {
    await waitFor(
      'every acknowledged message to have a final reply, stored and seen by its client',
      async () => {
        last = await missing();
        return last.length === 0 ? true : undefined;
      },
      boundMs,
      500,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}\n  ${last.slice(0, 20).join('\n  ')}`);
  }

  const outcome: Outcome = { replies: 0, completed: 0, failed: 0, failures: {} };
  for (const c of convs) {
    const stored = await storedMessages(c);
    const users = stored.filter((m) => m.role === 'user');
    const assistants = stored.filter((m) => m.role === 'assistant');
    // No loss, no duplicate, nothing unacknowledged.
    assert.deepEqual(
      users.map((m) => m.id),
      c.sent.map((s) => s.messageId),
      `${c.label}: the stored user messages are exactly the acknowledged ones, once each, in send order`,
    );
    for (const [i, s] of c.sent.entries()) assert.equal(users[i]!.content, s.content, `${c.label} #${s.index}: content`);
    assert.equal(assistants.length, c.sent.length, `${c.label}: one assistant message per user message, got ${assistants.length} for ${c.sent.length}`);
    // Turns alternate: user i, then its reply, in send order.
    assert.deepEqual(
      stored.map((m) => m.id),
      c.sent.flatMap((s) => [s.messageId, s.replyId]),
      `${c.label}: stored turns alternate user, assistant in send order`,
    );
    const byId = new Map(stored.map((m) => [m.id, m]));
    let previousFinalSeq = 0;
    for (const s of c.sent) {
      const row = byId.get(s.replyId)!;
      assert.equal(row.role, 'assistant');
      assert.equal(row.reply_to, s.messageId, `${c.label} #${s.index}: the reply belongs to its message`);
      assert.ok(FINAL_STATUSES.has(row.status), `${c.label} #${s.index}: final status, got ${row.status}`);
      if (row.status === 'completed') assert.ok(row.content.endsWith(`You asked: ${s.content}`), `${c.label} #${s.index}: the reply answers its own message: ${row.content}`);

      const frames = c.framesOf(s.replyId);
      const finals = frames.filter(isFinal);
      assert.equal(finals.length, 1, `${c.label} #${s.index}: exactly one final frame, got ${JSON.stringify(finals)}`);
      const fin = finals[0]!;
      assert.equal(fin.type, row.status === 'completed' ? 'reply.completed' : 'reply.failed', `${c.label} #${s.index}: the final frame agrees with the store`);
      if (fin.type === 'reply.completed') assert.equal(fin.content, row.content, `${c.label} #${s.index}: final content`);
      // Replies of a session run one at a time, in order.
      assert.ok(frames[0]!.seq > previousFinalSeq, `${c.label} #${s.index}: its frames start (seq ${frames[0]!.seq}) after the previous reply's final (seq ${previousFinalSeq})`);
      assert.equal(fin.seq, frames[frames.length - 1]!.seq, `${c.label} #${s.index}: nothing of the reply after its final frame`);
      previousFinalSeq = fin.seq;

      outcome.replies++;
      if (row.status === 'completed') outcome.completed++;
      else {
        outcome.failed++;
        const code = fin.error?.code ?? 'unknown';
        outcome.failures[code] = (outcome.failures[code] ?? 0) + 1;
      }
    }
    // A frame never reached the client twice or out of order (also across reconnects with resume).
    const seqs = c.arrivals.map((f) => f.seq);
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `${c.label}: frames arrived in seq order without repeats: ${seqs.join(',')}`);
    assert.deepEqual(c.errors, [], `${c.label}: no error frames (e.g. resume_gap)`);
  }
  return outcome;
}
