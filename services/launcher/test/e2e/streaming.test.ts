import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createGrpcTransport } from '@connectrpc/connect-node';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { apiV1 } from '@chat/contracts/es';
import { loopbackMesh } from '@chat/clients';
import { freePort, isolatedDatabase, type IsolatedDatabase } from '@chat/db';
import { startDevModel, type DevModel } from '@chat/devmodel';
import { configureLogger, getLogger } from '@chat/logger';
import { Api, dumpOutput, Frames, startProc, stopProc, waitFor, waitReady, type Proc } from './harness.js';
import { API_KEYS, OWNER_A_KEY, OWNER_B_KEY } from './lifecycle.js';

/** openWs opens a session socket (optionally resuming with ?last_seq=) and records its frames. */
function openWs(url: string): Promise<Frames> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const frames = new Frames(ws);
    ws.once('open', () => resolve(frames));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

const closeWs = (f: Frames) =>
  new Promise<void>((resolve) => {
    if (f.ws.readyState === WebSocket.CLOSED) return resolve();
    f.ws.once('close', () => resolve());
    f.ws.close();
  });

/** replyFrames are the reply frames of one reply in arrival order. */
const replyFrames = (f: Frames, replyId: string) => f.frames.filter((x) => x.reply_id === replyId && typeof x.seq === 'number');

/** assertContiguous checks seqs from..to with no gap and no duplicate. */
function assertContiguous(seqs: number[], from: number, what: string): void {
  assert.ok(seqs.length > 0, `${what}: no frames`);
  assert.deepEqual(seqs, Array.from({ length: seqs.length }, (_, i) => from + i), `${what}: ${JSON.stringify(seqs)}`);
}

/**
 * Streaming across gateway instances and restarts, on real PostgreSQL and Kafka, one OS process per
 * target and two gateway processes: a WebSocket `resume` is served from the durable reply events
 * (session service, ListReplyEvents) when a gateway never saw them, with no gap and no duplicate;
 * the OpenAI-compatible endpoint and the Connect endpoint (gRPC over h2c) work on the same stack.
 */
describe('e2e: resumable streams across gateway restarts and instances (Kafka, multi-process)', function () {
  this.timeout(240_000);
  const databaseUrl = process.env.DATABASE_URL;
  const brokers = process.env.KAFKA_BROKERS;
  let procs: Proc[] = [];
  let llm: DevModel | undefined;
  let db: IsolatedDatabase | undefined;
  let dataDir = '';
  let env: Record<string, string> = {};
  let portA = 0;
  let portB = 0;
  let gatewayA: Proc;
  let baseA = '';
  let baseB = '';
  let persona = '';

  before(async function () {
    if (!databaseUrl || !brokers) throw new Error('DATABASE_URL or KAFKA_BROKERS is not set (npm test starts them; or run scripts/infra up)');
    configureLogger({ silent: true });
    // Replies of 150 tokens at 40 tokens/s: long enough (about 4 s) to disconnect and come back mid-reply.
    llm = await startDevModel({ host: '127.0.0.1', port: 0, logger: getLogger('streaming-llm'), script: { ttftMs: 20, tokensPerSecond: 40, replyTokens: 150 } });
    db = await isolatedDatabase(databaseUrl, 'e2e_stream', getLogger('streaming-db'));
    dataDir = mkdtempSync(join(tmpdir(), 'chat-e2e-stream-'));
    const [personaPort, sessionPort, schedulerPort, ragPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const mesh = loopbackMesh({ persona: personaPort, session: sessionPort, scheduler: schedulerPort, rag: ragPort });
    [portA, portB] = await Promise.all([freePort(), freePort()]);
    env = {
      LLM_BASE_URL: llm.endpoint.baseUrl,
      LLM_API_KEY: 'e2e-llm-key',
      LLM_MODEL: llm.endpoint.model,
      DATABASE_URL: db.url,
      KAFKA_BROKERS: brokers,
      KAFKA_NAMESPACE: `e2e-stream-${randomUUID().slice(0, 8)}`,
      DATA_DIR: dataDir,
      API_KEYS,
      WS_TOKEN_SECRET: 'e2e-ws-token-secret-0123456789abcdef',
      ...mesh.addresses,
    };
    baseA = `http://127.0.0.1:${portA}`;
    baseB = `http://127.0.0.1:${portB}`;
    gatewayA = startProc('gateway-a', 'gateway', { ...env, GATEWAY_HTTP_LISTEN: `127.0.0.1:${portA}` });
    procs = [
      startProc('persona', 'persona', { ...env, ...mesh.listen('persona') }),
      startProc('rag', 'rag', { ...env, ...mesh.listen('rag') }),
      startProc('session', 'session', { ...env, ...mesh.listen('session') }),
      startProc('scheduler', 'scheduler', { ...env, ...mesh.listen('scheduler') }),
      gatewayA,
    ];
    try {
      await waitReady(baseA, procs);
      await waitFor('every process to be ready', async () => (procs.every((p) => p.output.some((l) => l.includes('"message":"ready"'))) ? true : undefined), 90_000);
    } catch (err) {
      dumpOutput(procs);
      throw err;
    }
    const created = await new Api(baseA, OWNER_A_KEY).call('POST', '/api/personas', { name: 'Tide keeper', system_prompt: 'You answer about tides.' });
    if (created.status !== 201) dumpOutput(procs);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    persona = created.body.id;
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') dumpOutput(procs);
  });

  after(async () => {
    for (const p of [...procs].reverse()) await stopProc(p);
    await llm?.stop();
    await db?.drop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  const newSession = async (base: string) => {
    const r = await new Api(base, OWNER_A_KEY).call('POST', '/api/sessions', { persona_id: persona });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id as string;
  };
  const wsToken = async (base: string, session: string) => {
    const r = await new Api(base, OWNER_A_KEY).call('POST', `/api/sessions/${session}/ws_token`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.ws_token as string;
  };
  const wsUrl = (base: string, session: string, token: string, lastSeq?: number) =>
    `${base.replace(/^http/, 'ws')}/ws/sessions/${session}?ws_token=${encodeURIComponent(token)}${lastSeq === undefined ? '' : `&last_seq=${lastSeq}`}`;
  const send = async (base: string, session: string, content: string) => {
    const r = await new Api(base, OWNER_A_KEY).call('POST', `/api/sessions/${session}/messages`, { content });
    assert.equal(r.status, 202, JSON.stringify(r.body));
    return r.body.reply_id as string;
  };

  it('resumes on a second gateway instance that started after the reply began, and every socket of the session gets the whole stream', async () => {
    const session = await newSession(baseA);
    // A watcher on gateway A sees the whole reply from its start.
    const watcher = await openWs(wsUrl(baseA, session, await wsToken(baseA, session)));
    const first = await openWs(wsUrl(baseA, session, await wsToken(baseA, session)));
    const replyId = await send(baseA, session, 'How high is the tide today?');
    await first.until((f) => f.reply_id === replyId && f.type === 'reply.delta' && f.seq >= 5);
    await closeWs(first);
    const seen = replyFrames(first, replyId);
    const lastSeen = seen[seen.length - 1]!.seq as number;

    // Gateway B starts now: it never saw this reply's earlier events.
    const gatewayB = startProc('gateway-b', 'gateway', { ...env, GATEWAY_HTTP_LISTEN: `127.0.0.1:${portB}` });
    procs.push(gatewayB);
    await waitReady(baseB, [gatewayB]);
    const resumed = await openWs(wsUrl(baseB, session, await wsToken(baseB, session)));
    resumed.ws.send(JSON.stringify({ type: 'resume', last_seq: lastSeen }));
    const done = await resumed.until((f) => f.reply_id === replyId && (f.type === 'reply.completed' || f.type === 'reply.failed'));
    assert.equal(done.type, 'reply.completed', JSON.stringify(done));
    const all = await watcher.until((f) => f.reply_id === replyId && f.type === 'reply.completed');

    const watched = replyFrames(watcher, replyId).map((f) => f.seq as number);
    assertContiguous(watched, watched[0]!, 'the watcher on gateway A');
    const got = replyFrames(resumed, replyId).map((f) => f.seq as number);
    assertContiguous(got, lastSeen + 1, 'the resumed socket on gateway B');
    assert.equal(got[got.length - 1], all.seq);
    // Together, the first socket and the resumed one saw the reply's text exactly once.
    const text = [...seen, ...replyFrames(resumed, replyId)].filter((f) => f.type === 'reply.delta').map((f) => f.text).join('');
    assert.equal(text, all.content);
    await closeWs(resumed);
    await closeWs(watcher);
  });

  it('resumes after a gateway restart, mid-reply, from the stored events and then live', async () => {
    const session = await newSession(baseA);
    const first = await openWs(wsUrl(baseA, session, await wsToken(baseA, session)));
    const replyId = await send(baseA, session, 'And tomorrow?');
    await first.until((f) => f.reply_id === replyId && f.type === 'reply.delta' && f.seq >= 3);
    const closed = new Promise<number>((resolve) => first.ws.once('close', (code) => resolve(code)));
    // Restart gateway A on the same port while the reply streams.
    assert.equal(await stopProc(gatewayA), 0);
    assert.equal(await closed, 1001);
    const seen = replyFrames(first, replyId);
    const lastSeen = seen[seen.length - 1]!.seq as number;
    gatewayA = startProc('gateway-a2', 'gateway', { ...env, GATEWAY_HTTP_LISTEN: `127.0.0.1:${portA}` });
    procs.push(gatewayA);
    await waitReady(baseA, [gatewayA]);
    // Resume atomically with the upgrade.
    const resumed = await openWs(wsUrl(baseA, session, await wsToken(baseA, session), lastSeen));
    const done = await resumed.until((f) => f.reply_id === replyId && (f.type === 'reply.completed' || f.type === 'reply.failed'));
    assert.equal(done.type, 'reply.completed', JSON.stringify(done));
    const got = replyFrames(resumed, replyId).map((f) => f.seq as number);
    assertContiguous(got, lastSeen + 1, 'the resumed socket after the restart');
    const text = [...seen, ...replyFrames(resumed, replyId)].filter((f) => f.type === 'reply.delta').map((f) => f.text).join('');
    assert.equal(text, done.content);
    // A later resume from 0 replays the whole session's stream from the store, still in order.
    const again = await openWs(wsUrl(baseA, session, await wsToken(baseA, session), 0));
    await again.until((f) => f.reply_id === replyId && f.type === 'reply.completed');
    assertContiguous(again.frames.filter((f) => typeof f.seq === 'number').map((f) => f.seq as number), 1, 'a full replay');
    await closeWs(resumed);
    await closeWs(again);
  });

  it('answers the official openai client on /v1 (stream and non-stream) through the real pipeline', async () => {
    const client = new OpenAI({ apiKey: OWNER_A_KEY, baseURL: `${baseA}/v1`, maxRetries: 0, timeout: 60_000 });
    const models = [];
    for await (const m of client.models.list()) models.push(m.id);
    assert.ok(models.includes(persona));
    const res = await client.chat.completions.create({ model: persona, messages: [{ role: 'user', content: 'Tell me about the tide.' }] });
    assert.ok((res.choices[0]!.message.content ?? '').length > 0);
    const stream = await client.chat.completions.create({ model: 'Tide keeper', messages: [{ role: 'user', content: 'Once more?' }], stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    assert.ok(text.length > 0);
    assert.equal(finish, 'stop');
    const other = new OpenAI({ apiKey: OWNER_B_KEY, baseURL: `${baseA}/v1`, maxRetries: 0 });
    await assert.rejects(other.chat.completions.create({ model: persona, messages: [{ role: 'user', content: 'hi' }] }), OpenAI.NotFoundError);
  });

  it('streams a reply over gRPC (Connect endpoint, h2c on the gateway port) with resume', async () => {
    const client = createClient(apiV1.ChatService, createGrpcTransport({ baseUrl: baseA }));
    const headers = { authorization: `Bearer ${OWNER_A_KEY}` };
    const { session } = await client.createSession({ personaId: persona }, { headers });
    const sent = await client.sendMessage({ sessionId: session!.id, content: 'Over gRPC?' }, { headers });
    const seqs: number[] = [];
    let completed = false;
    for await (const r of client.streamReplies({ sessionId: session!.id, resume: true, afterSeq: 0n }, { headers, timeoutMs: 60_000 })) {
      assert.equal(r.replyId, sent.replyId);
      seqs.push(Number(r.seq));
      if (r.kind.case === 'completed' || r.kind.case === 'failed') {
        completed = r.kind.case === 'completed';
        break;
      }
    }
    assert.ok(completed);
    assertContiguous(seqs, 1, 'the gRPC stream');
    await assert.rejects(client.getSession({ id: session!.id }, { headers: { authorization: `Bearer ${OWNER_B_KEY}` } }), (err: unknown) => ConnectError.from(err).code === Code.NotFound);
  });
});
