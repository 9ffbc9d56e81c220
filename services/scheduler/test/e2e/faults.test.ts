import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, isolatedDatabase, type IsolatedDatabase } from '@chat/db';
import { startDevModel, type DevModel, type ModelFault, type ScriptedRequest } from '@chat/devmodel';
import { DltHeaders, KafkaBus, type EventRecord, type Subscription } from '@chat/events';
import { configureLogger } from '@chat/logger';
import { eventsV1 } from '@chat/contracts';

/*
 * Fault tests of the scheduler on real Kafka and PostgreSQL: the product runs as one
 * `--target=all` process (launcher main.js) on its own database and Kafka namespace; its LLM is
 * the scripted development model in this test process (the real openai client, real HTTP faults).
 * Each scenario talks to the public REST API like a client, reads the reply events the gateway
 * forwards to sockets (chat.replies.v1), and checks: no
 * acknowledged (202) message lost, no duplicate assistant message, per-session order kept, and
 * reply.completed or reply.failed within a bound.
 */

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', '..');
const MAIN = join(ROOT, 'services', 'launcher', 'dist', 'src', 'main.js');
const logger = configureLogger({ silent: true });
/** Every reply must end (completed or failed) within this, faults and retries included. */
const FINAL_BOUND_MS = 45_000;
const ALICE = 'alice-key-0123456789';
const ADMIN = 'admin-key-0123456789';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, fn: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(100);
  }
}

interface Frame {
  type: string;
  reply_id?: string;
  seq?: number;
  text?: string;
  error?: { code: string; message: string };
}

/**
 * The reply events of one session as a client sees them: the gateway forwards each ReplyEvent of
 * chat.replies.v1 to the session's sockets as one frame (reply.delta, reply.completed,
 * reply.failed), so the test reads the same events from Kafka and renders them the same way.
 */
class Socket {
  readonly frames: Frame[] = [];
  finals(replyId: string): Frame[] {
    return this.frames.filter((f) => f.reply_id === replyId && (f.type === 'reply.completed' || f.type === 'reply.failed'));
  }
  deltas(replyId: string): Frame[] {
    return this.frames.filter((f) => f.reply_id === replyId && f.type === 'reply.delta');
  }
  add(e: eventsV1.ReplyEvent): void {
    const base = { reply_id: e.replyId, seq: Number(e.seq) };
    if (e.kind?.$case === 'delta') this.frames.push({ type: 'reply.delta', ...base, text: e.kind.value.text });
    else if (e.kind?.$case === 'completed') this.frames.push({ type: 'reply.completed', ...base, text: e.kind.value.content });
    else if (e.kind?.$case === 'failed') this.frames.push({ type: 'reply.failed', ...base, error: { code: e.kind.value.code, message: e.kind.value.message } });
  }
}

describe('scheduler faults on real Kafka and PostgreSQL (scripted OpenAI-compatible model)', function () {
  this.timeout(300_000);
  let db: IsolatedDatabase;
  let model: DevModel;
  let proc: ChildProcess;
  const output: string[] = [];
  let dataDir: string;
  let base = '';
  let personaId = '';
  const namespace = `sched-faults-${randomBytes(4).toString('hex')}`;
  let bus: KafkaBus;
  let dlt: Subscription;
  const deadLetters: EventRecord[] = [];
  const sockets = new Map<string, Socket>();
  let replies: Subscription;

  /** Faults by tag (a word in the user message): one entry per request of that message, in order. */
  const plans = new Map<string, Array<ModelFault | undefined>>();
  /** Requests seen by tag, with their arrival time. */
  const seen = new Map<string, number[]>();
  const tagOf = (req: ScriptedRequest): string | undefined => {
    const last = req.messages[req.messages.length - 1];
    const text = typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content ?? '');
    return /\[(t-[a-z0-9-]+)\]/.exec(text)?.[1];
  };

  const api = async (method: string, path: string, body?: unknown, key = ALICE): Promise<{ status: number; body: any }> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };

  const dump = () => process.stderr.write(`\n--- product process (last lines) ---\n${output.slice(-60).join('\n')}\n`);

  before(async function () {
    const { DATABASE_URL, KAFKA_BROKERS } = process.env;
    assert.ok(DATABASE_URL && KAFKA_BROKERS, 'npm test provides DATABASE_URL and KAFKA_BROKERS (scripts/infra)');
    db = await isolatedDatabase(DATABASE_URL, 'sched_faults', logger);
    model = await startDevModel({
      logger,
      script: {
        replyTokens: 6,
        tokensPerSecond: 300,
        faults: (_n, req) => {
          const tag = tagOf(req);
          if (!tag) return undefined;
          seen.set(tag, [...(seen.get(tag) ?? []), Date.now()]);
          return plans.get(tag)?.shift();
        },
      },
    });
    dataDir = mkdtempSync(join(tmpdir(), 'sched-faults-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    proc = spawn(process.execPath, ['--enable-source-maps', MAIN, '--target=all'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '',
        LOG_LEVEL: 'info',
        DATA_DIR: dataDir,
        DATABASE_URL: db.url,
        DATABASE_POOL_MAX: '5',
        KAFKA_BROKERS,
        KAFKA_NAMESPACE: namespace,
        KAFKA_PARTITIONS: '4',
        LLM_BASE_URL: model.endpoint.baseUrl,
        LLM_API_KEY: 'scripted-model-key',
        LLM_MODEL: model.endpoint.model,
        GATEWAY_HTTP_LISTEN: `127.0.0.1:${port}`,
        API_KEYS: `alice:${ALICE},admin:${ADMIN}`,
        ADMIN_OWNERS: 'admin',
        // Many sessions' messages per partition at once (off by default, see decision 0008).
        SCHEDULER_PARTITION_CONCURRENCY: '16',
        SCHEDULER_FIRST_TOKEN_TIMEOUT_MS: '1500',
        SCHEDULER_REPLY_TIMEOUT_MS: '30000',
        SCHEDULER_MAX_ATTEMPTS: '3',
        SCHEDULER_RETRY_BASE_MS: '100',
        SCHEDULER_RETRY_MAX_MS: '3000',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const keep = (b: Buffer) => {
      output.push(...b.toString().split('\n').filter(Boolean));
      if (output.length > 3000) output.splice(0, output.length - 3000);
    };
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    try {
      await waitFor(
        'the product to be ready',
        async () => {
          if (proc.exitCode !== null) throw Object.assign(new Error(`exited with ${proc.exitCode}`), { fatal: true });
          const r = await fetch(`${base}/readyz`).catch(() => undefined);
          return r?.status === 200 ? true : undefined;
        },
        120_000,
      );
    } catch (err) {
      dump();
      throw err;
    }
    // The dead-letter topic of the messages, read directly from Kafka as an operator would.
    bus = new KafkaBus({ brokers: KAFKA_BROKERS.split(','), clientId: 'sched-faults-test', namespace });
    replies = await bus.subscribe({
      topics: ['chat.replies.v1'],
      groupId: `test-replies-${randomUUID().slice(0, 8)}`,
      fromBeginning: true,
      handler: async (r) => {
        const e = eventsV1.ReplyEvent.decode(r.value);
        sockets.get(e.sessionId)?.add(e);
      },
    });
    dlt = await bus.subscribe({ topics: ['chat.messages.v1.DLT'], groupId: `test-dlt-${randomUUID().slice(0, 8)}`, fromBeginning: true, handler: async (r) => void deadLetters.push(r) });
    const persona = await api('POST', '/api/personas', { name: 'Fault persona', system_prompt: 'Answer briefly.' });
    assert.equal(persona.status, 201, JSON.stringify(persona.body));
    personaId = persona.body.id;
  });

  after(async () => {
    await replies?.stop().catch(() => undefined);
    await dlt?.stop().catch(() => undefined);
    await bus?.close().catch(() => undefined);
    if (proc && proc.exitCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(t);
    }
    await model?.stop();
    await db?.drop().catch(() => undefined);
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') dump();
  });

  /** openSession creates a session and starts collecting its reply events. */
  const openSession = async (): Promise<{ id: string; socket: Socket }> => {
    const s = await api('POST', '/api/sessions', { persona_id: personaId });
    assert.equal(s.status, 201);
    const socket = new Socket();
    sockets.set(s.body.id, socket);
    return { id: s.body.id, socket };
  };

  /** send posts messages one after another; each must be acknowledged with 202. */
  const send = async (sessionId: string, tags: string[]): Promise<Array<{ tag: string; messageId: string; replyId: string }>> => {
    const out = [];
    for (const tag of tags) {
      const r = await api('POST', `/api/sessions/${sessionId}/messages`, { content: `[${tag}] tell me something` });
      assert.equal(r.status, 202, JSON.stringify(r.body));
      out.push({ tag, messageId: r.body.message_id as string, replyId: r.body.reply_id as string });
    }
    return out;
  };

  /**
   * settle waits (bounded) until the client saw a final frame for every reply and the stored
   * assistant rows are final, then checks the invariants; returns the final frame of each reply.
   */
  const settle = async (sessionId: string, socket: Socket, sent: Array<{ replyId: string; messageId: string }>): Promise<Frame[]> => {
    const t0 = Date.now();
    await waitFor('a final frame for every reply', () => (sent.every((s) => socket.finals(s.replyId).length > 0) ? true : undefined), FINAL_BOUND_MS);
    assert.ok(Date.now() - t0 <= FINAL_BOUND_MS);
    const rows = await waitFor(
      'every stored reply to be final',
      async () => {
        const r = await api('GET', `/api/sessions/${sessionId}/messages?limit=200`);
        const msgs = r.body.messages as Array<{ id: string; role: string; status: string; reply_to?: string; error?: string }>;
        const replies = msgs.filter((m) => m.role === 'assistant');
        return replies.length >= sent.length && replies.every((m) => ['completed', 'failed', 'cancelled'].includes(m.status)) ? msgs : undefined;
      },
      FINAL_BOUND_MS,
    );
    // No acknowledged message lost: every user message and its one reply row are stored.
    for (const s of sent) {
      assert.ok(rows.some((m) => m.id === s.messageId && m.role === 'user'), `user message ${s.messageId} stored`);
      const replies = rows.filter((m) => m.role === 'assistant' && m.reply_to === s.messageId);
      assert.equal(replies.length, 1, `exactly one assistant message for ${s.messageId}`);
      assert.equal(replies[0]!.id, s.replyId);
    }
    assert.equal(rows.filter((m) => m.role === 'assistant').length, sent.length, 'no duplicate assistant message');
    // No duplicate final frame, and finals in the order the messages were sent (per-session order).
    await sleep(300);
    for (const s of sent) assert.equal(socket.finals(s.replyId).length, 1, `one final frame for ${s.replyId}`);
    const order = socket.frames.filter((f) => f.type === 'reply.completed' || f.type === 'reply.failed').map((f) => f.reply_id);
    assert.deepEqual(order, sent.map((s) => s.replyId));
    // Frames carry increasing seq within the session.
    const seqs = socket.frames.filter((f) => f.seq !== undefined).map((f) => f.seq!);
    for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i]! > seqs[i - 1]!, `seq increases: ${seqs.join(',')}`);
    // A reply's text frames all come before its final frame, and nothing of a later reply before it.
    for (const s of sent) {
      const fin = socket.frames.indexOf(socket.finals(s.replyId)[0]!);
      assert.ok(socket.frames.every((f, i) => f.reply_id !== s.replyId || f.type !== 'reply.delta' || i < fin));
    }
    const status = new Map(rows.filter((m) => m.role === 'assistant').map((m) => [m.id, m.status]));
    for (const s of sent) {
      const f = socket.finals(s.replyId)[0]!;
      assert.equal(status.get(s.replyId), f.type === 'reply.completed' ? 'completed' : 'failed', 'the stored status matches what the client saw');
    }
    return sent.map((s) => socket.finals(s.replyId)[0]!);
  };

  it('LLM 500: the attempt is retried and the reply completes once, in order', async () => {
    const { id, socket } = await openSession();
    plans.set('t-500-a', [{ status: 500 }]);
    const sent = await send(id, ['t-500-a', 't-500-b', 't-500-c']);
    const finals = await settle(id, socket, sent);
    assert.deepEqual(
      finals.map((f) => f.type),
      ['reply.completed', 'reply.completed', 'reply.completed'],
    );
    assert.equal(seen.get('t-500-a')?.length, 2, 'one failed attempt, one retry');
    assert.equal(seen.get('t-500-b')?.length, 1);
  });

  it('LLM 429 with Retry-After: the next attempt waits at least that long, then completes', async () => {
    const { id, socket } = await openSession();
    plans.set('t-429-a', [{ status: 429, retryAfterS: 1 }]);
    const sent = await send(id, ['t-429-a', 't-429-b']);
    const finals = await settle(id, socket, sent);
    assert.deepEqual(
      finals.map((f) => f.type),
      ['reply.completed', 'reply.completed'],
    );
    const times = seen.get('t-429-a')!;
    assert.equal(times.length, 2);
    assert.ok(times[1]! - times[0]! >= 950, `retried after ${times[1]! - times[0]!} ms, Retry-After was 1 s`);
  });

  it('a model that hangs past the first-token deadline: the attempt is cut and retried, the reply completes', async () => {
    const { id, socket } = await openSession();
    plans.set('t-hang-a', [{ hang: true }]);
    const sent = await send(id, ['t-hang-a', 't-hang-b']);
    const finals = await settle(id, socket, sent);
    assert.deepEqual(
      finals.map((f) => f.type),
      ['reply.completed', 'reply.completed'],
    );
    assert.equal(seen.get('t-hang-a')?.length, 2);
    await waitFor('the hung request to be dropped', () => (model.stats.hanging === 0 ? true : undefined), 10_000);
  });

  it('a connection reset mid-stream: a reply that streamed text fails (reply_interrupted, not re-run); one reset before any text is retried', async () => {
    const { id, socket } = await openSession();
    plans.set('t-reset-a', [{ resetAfterTokens: 3 }]);
    plans.set('t-reset-b', [{ resetAfterTokens: 0 }]);
    const sent = await send(id, ['t-reset-a', 't-reset-b', 't-reset-c']);
    const finals = await settle(id, socket, sent);
    assert.equal(finals[0]!.type, 'reply.failed');
    assert.equal(finals[0]!.error?.code, 'reply_interrupted');
    assert.ok(socket.deltas(sent[0]!.replyId).length >= 1, 'text had streamed before the reset');
    assert.equal(seen.get('t-reset-a')?.length, 1, 'never re-run');
    assert.equal(finals[1]!.type, 'reply.completed');
    assert.equal(seen.get('t-reset-b')?.length, 2);
    assert.equal(finals[2]!.type, 'reply.completed');
    const letter = await waitFor('the interrupted message on the DLT', () => deadLetters.find((r) => r.headers[DltHeaders.code] === 'reply_interrupted' && r.key === id));
    assert.equal(letter.headers[DltHeaders.attempts], '1');
  });

  it('500 on every attempt: reply.failed, the message on chat.messages.v1.DLT with its cause; admins list and replay it once', async () => {
    const { id, socket } = await openSession();
    plans.set('t-dlt-a', [{ status: 503 }, { status: 503 }, { status: 503 }]);
    const sent = await send(id, ['t-dlt-a', 't-dlt-b']);
    const finals = await settle(id, socket, sent);
    assert.equal(finals[0]!.type, 'reply.failed');
    assert.equal(finals[0]!.error?.code, 'llm_unavailable');
    assert.equal(finals[1]!.type, 'reply.completed', 'the session goes on after a failed reply');
    assert.equal(seen.get('t-dlt-a')?.length, 3, 'the configured attempts');
    const letter = await waitFor('the dead letter on Kafka', () => deadLetters.find((r) => r.key === id && r.headers[DltHeaders.code] === 'llm_unavailable'));
    assert.equal(letter.headers[DltHeaders.attempts], '3');
    assert.equal(letter.headers[DltHeaders.group], 'scheduler');
    assert.match(letter.headers[DltHeaders.cause] ?? '', /503/);
    assert.ok(letter.headers[DltHeaders.id]);

    // Admin API: only ADMIN_OWNERS.
    const denied = await api('GET', '/api/admin/dead_letters');
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'permission_denied');
    const listed = await waitFor('the admin list to show it', async () => {
      const r = await api('GET', '/api/admin/dead_letters?topic=chat.messages.v1', undefined, ADMIN);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return (r.body.dead_letters as any[]).find((d) => d.reply_id === sent[0]!.replyId);
    });
    assert.equal(listed.id, letter.headers[DltHeaders.id]);
    assert.equal(listed.code, 'llm_unavailable');
    assert.equal(listed.attempts, 3);
    assert.equal(listed.session_id, id);
    assert.equal(listed.replayed, false);
    const bad = await api('GET', '/api/admin/dead_letters?limit=0', undefined, ADMIN);
    assert.equal(bad.status, 400);
    assert.equal((await api('POST', `/api/admin/dead_letters/${listed.id}/replay`)).status, 403);
    assert.equal((await api('POST', `/api/admin/dead_letters/${randomUUID()}/replay`, undefined, ADMIN)).status, 404);

    // Replay: the message runs again under the same reply id (the model answers now).
    const replayed = await api('POST', `/api/admin/dead_letters/${listed.id}/replay`, undefined, ADMIN);
    assert.equal(replayed.status, 200, JSON.stringify(replayed.body));
    assert.equal(replayed.body.dead_letter.replayed, true);
    assert.equal(replayed.body.dead_letter.replayed_by, 'admin');
    await waitFor('the replayed reply to complete', () => (socket.frames.some((f) => f.reply_id === sent[0]!.replyId && f.type === 'reply.completed') ? true : undefined), FINAL_BOUND_MS);
    assert.equal(seen.get('t-dlt-a')?.length, 4);
    const again = await api('POST', `/api/admin/dead_letters/${listed.id}/replay`, undefined, ADMIN);
    assert.equal(again.status, 422);
    assert.equal(again.body.error.code, 'already_replayed');
    // Still one assistant message per user message.
    const msgs = (await api('GET', `/api/sessions/${id}/messages?limit=200`)).body.messages as Array<{ role: string; reply_to?: string }>;
    assert.equal(msgs.filter((m) => m.role === 'assistant' && m.reply_to === sent[0]!.messageId).length, 1);
    assert.equal(msgs.filter((m) => m.role === 'assistant').length, 2);
    // The stored reply follows the replay (its `reopened` event moved it back to pending): it ends
    // completed with the new text, not failed.
    const stored = await waitFor('the replayed reply to be stored completed', async () => {
      const r = await api('GET', `/api/sessions/${id}/messages?limit=200`);
      const m = (r.body.messages as Array<{ role: string; reply_to?: string; status: string; content: string; error?: unknown }>).find((x) => x.role === 'assistant' && x.reply_to === sent[0]!.messageId);
      return m?.status === 'completed' ? m : undefined;
    }, FINAL_BOUND_MS);
    assert.ok(stored.content.length > 0, 'the new text is stored');
    assert.ok(!stored.error, `no error left on the stored reply: ${JSON.stringify(stored.error)}`);
    // Replayed letters leave the default list, and show with include_replayed.
    const after = await api('GET', '/api/admin/dead_letters?topic=chat.messages.v1', undefined, ADMIN);
    assert.ok(!(after.body.dead_letters as any[]).some((d) => d.id === listed.id));
    const all = await api('GET', '/api/admin/dead_letters?include_replayed=true', undefined, ADMIN);
    assert.ok((all.body.dead_letters as any[]).some((d) => d.id === listed.id && d.replayed));
  });

  it('a reply held up by its model does not hold up other sessions (many sessions per partition at once)', async () => {
    const a = await openSession();
    const b = await openSession();
    plans.set('t-slow-a', [{ hang: true }]);
    const sentA = await send(a.id, ['t-slow-a']);
    await waitFor('the slow request to arrive', () => (seen.get('t-slow-a')?.length ? true : undefined), FINAL_BOUND_MS);
    const sentB = await send(b.id, ['t-slow-b']);
    const [finB] = await settle(b.id, b.socket, sentB);
    assert.equal(finB!.type, 'reply.completed');
    assert.equal(a.socket.finals(sentA[0]!.replyId).length, 0, 'the other session answered while this one still waited for its model');
    const [finA] = await settle(a.id, a.socket, sentA);
    assert.equal(finA!.type, 'reply.completed');
  });

  it('exposes retries, dead letters, queue length per priority, processing time and in-flight generations on /metrics', async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const value = (re: RegExp) => [...text.matchAll(re)].reduce((n, m) => n + Number(m[1]), 0);
    assert.ok(value(/^chat_scheduler_retries_total\{[^}]*\} (\d+)/gm) >= 5, 'retries counted');
    assert.ok(value(/^chat_scheduler_dead_letters_total\{[^}]*\} (\d+)/gm) >= 2, 'dead letters counted');
    assert.ok(value(/^chat_bus_dead_letters_total\{[^}]*topic="chat\.messages\.v1"[^}]*\} (\d+)/gm) >= 2);
    assert.match(text, /^chat_scheduler_queue_length\{[^}]*priority="normal"[^}]*\} 0/m);
    assert.match(text, /^chat_scheduler_inflight_generations(\{[^}]*\})? 0/m);
    assert.ok(value(/^chat_scheduler_processing_seconds_count\{[^}]*outcome="completed"[^}]*\} (\d+)/gm) >= 10);
  });
});
