// Latency benchmark: how much time the product adds before the first token, measured in one run
// against the same scripted OpenAI-compatible server (@chat/devmodel, fixed time to first token):
//
//   direct   the openai client streams from the scripted server itself (the base)
//   ws       POST /api/sessions/{id}/messages → first reply.delta on the session's WebSocket
//   openai   POST /v1/chat/completions (stream) through the gateway → first content chunk
//
// Samples are sequential (one request in flight) and interleaved (direct, ws, openai, direct, …), so
// the three paths share the machine's noise. Added latency = pXX(path) − p50(direct). Modes: `all`
// (one process, embedded defaults) and `kafka` (one process per target on PostgreSQL + Kafka, with a
// database and a KAFKA_NAMESPACE of its own; needs DATABASE_URL and KAFKA_BROKERS, e.g.
// `eval "$(scripts/infra env)"`). Prints a table and writes bench-results/latency-<timestamp>.json.
// Needs `npm run build` first.
//
//   npm run bench:latency -- [--samples=200] [--warmup=20] [--ttft-ms=20] [--modes=all,kafka] [--turns-per-session=10]
// Each option may also be given as an env var: BENCH_SAMPLES, BENCH_WARMUP, BENCH_TTFT_MS, BENCH_MODES.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { startDevModel } from '@chat/devmodel';
import { configureLogger, getLogger } from '@chat/logger';
import { apiClient, freePort, isolatedServers, must, opt, productProcesses, ROOT, sleep, summary } from './lib/bench.mjs';

const cfg = {
  samples: opt('samples', 200),
  warmup: opt('warmup', 20),
  ttftMs: opt('ttft-ms', 20),
  replyTokens: opt('reply-tokens', 5),
  turnsPerSession: Math.max(1, opt('turns-per-session', 10)),
  modes: opt('modes', 'all,kafka').split(',').map((s) => s.trim()).filter(Boolean),
  sampleTimeoutMs: opt('sample-timeout-ms', 30_000),
  readyTimeoutMs: opt('ready-timeout-ms', 120_000),
};

const KEY = 'bench-latency-key-0123456789abcdef';
const API_KEYS = `bench:${KEY}`;
// ---- processes and API ----------------------------------------------------------------------
const { startProc, stopProc, stopAll, dump, startMesh, waitReady: waitReadyWithin } = productProcesses({ keepLines: 300 });
const waitReady = (base, list) => waitReadyWithin(base, list, cfg.readyTimeoutMs);
const call = apiClient(KEY);
const r1 = (v) => (v === null || v === undefined ? null : Math.round(v * 10) / 10);

/** A session socket that resolves, per reply id, the arrival time of its first delta and its end. */
function openSocket(wsBase, sessionId, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/ws/sessions/${sessionId}?ws_token=${encodeURIComponent(token)}`);
    const replies = new Map();
    const rec = (id) => {
      let r = replies.get(id);
      if (!r) {
        r = { firstAt: undefined, done: undefined, onFirst: [], onDone: [] };
        replies.set(id, r);
      }
      return r;
    };
    ws.on('message', (data) => {
      const now = performance.now();
      const f = JSON.parse(data.toString());
      if (!f?.reply_id) return;
      const r = rec(f.reply_id);
      if (f.type === 'reply.delta' && r.firstAt === undefined) {
        r.firstAt = now;
        for (const w of r.onFirst.splice(0)) w();
      }
      if (f.type === 'reply.completed' || f.type === 'reply.failed') {
        r.done = f.type;
        r.error = f.error;
        for (const w of r.onDone.splice(0)) w();
      }
    });
    const wait = (id, key, list, timeoutMs) =>
      new Promise((res) => {
        const r = rec(id);
        if (r[key] !== undefined) return res(true);
        const t = setTimeout(() => res(false), timeoutMs);
        r[list].push(() => {
          clearTimeout(t);
          res(true);
        });
      });
    ws.once('open', () =>
      resolve({
        ws,
        rec,
        waitFirst: (id, ms) => wait(id, 'firstAt', 'onFirst', ms),
        waitDone: (id, ms) => wait(id, 'done', 'onDone', ms),
      }),
    );
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** firstContentMs streams one chat completion and returns the time to the first content chunk (and drains it). */
async function firstContentMs(client, model, content) {
  const t0 = performance.now();
  const stream = await client.chat.completions.create({ model, stream: true, messages: [{ role: 'user', content }] });
  let first;
  for await (const c of stream) if (first === undefined && c.choices[0]?.delta?.content) first = performance.now() - t0;
  return first ?? NaN;
}

// ---- one mode -------------------------------------------------------------------------------
async function runMode(mode, llm) {
  const dataDir = mkdtempSync(join(tmpdir(), `chat-bench-latency-${mode}-`));
  const http = await freePort();
  const base = `http://127.0.0.1:${http}`;
  // The rate limits are for clients, not for a bench that sends one request at a time on purpose.
  const llmEnv = {
    LLM_BASE_URL: llm.endpoint.baseUrl,
    LLM_API_KEY: 'bench-llm-key',
    LLM_MODEL: llm.endpoint.model,
    RATE_LIMIT_KEY_PER_MINUTE: '1000000',
    RATE_LIMIT_KEY_BURST: '100000',
    RATE_LIMIT_SESSION_PER_MINUTE: '1000000',
    RATE_LIMIT_SESSION_BURST: '100000',
  };
  let list;
  let servers;
  try {
    if (mode === 'all') {
      list = [startProc('all', 'all', { ...llmEnv, DATA_DIR: dataDir, GATEWAY_HTTP_LISTEN: `127.0.0.1:${http}`, API_KEYS })];
    } else {
      // A database and a Kafka namespace of this run's own, on the shared servers.
      servers = await isolatedServers('bench_latency');
      list = await startMesh({ ...llmEnv, ...servers.env, DATA_DIR: dataDir, API_KEYS, WS_TOKEN_SECRET: 'bench-ws-token-secret-0123456789abcdef' }, http);
    }
    const tStart = performance.now();
    await waitReady(base, list);
    console.log(`[${mode}] ready in ${Math.round(performance.now() - tStart)} ms; ${cfg.warmup} warm-up + ${cfg.samples} samples per path`);

    const persona = must(await call(base, 'POST', '/api/personas', { name: `Latency ${mode} ${Date.now()}`, system_prompt: 'You are a benchmark persona.' }), 201, 'create persona');
    // A new session (and socket) every --turns-per-session samples: what is measured is the path,
    // not a history that grows over hundreds of turns (which the scheduler's window reads and
    // counts tokens of on every turn).
    let session;
    let sock;
    const freshSession = async () => {
      sock?.ws.close();
      session = must(await call(base, 'POST', '/api/sessions', { persona_id: persona.id, title: 'latency' }), 201, 'create session');
      const tok = must(await call(base, 'POST', `/api/sessions/${session.id}/ws_token`), 200, 'ws_token');
      sock = await openSocket(base.replace(/^http/, 'ws'), session.id, tok.ws_token);
    };
    const direct = new OpenAI({ baseURL: llm.endpoint.baseUrl, apiKey: llm.endpoint.apiKey, maxRetries: 0, timeout: cfg.sampleTimeoutMs });
    const viaGateway = new OpenAI({ baseURL: `${base}/v1`, apiKey: KEY, maxRetries: 0, timeout: cfg.sampleTimeoutMs });

    const samples = { direct: [], ws: [], openai: [] };
    const errors = { direct: 0, ws: 0, openai: 0 };
    for (let i = 0; i < cfg.warmup + cfg.samples; i++) {
      const keep = i >= cfg.warmup;
      if (i % cfg.turnsPerSession === 0) await freshSession();
      try {
        const d = await firstContentMs(direct, llm.endpoint.model, `probe ${i}`);
        if (keep) samples.direct.push(d);
      } catch {
        errors.direct++;
      }
      try {
        const t0 = performance.now();
        const r = await call(base, 'POST', `/api/sessions/${session.id}/messages`, { content: `question ${i}` });
        if (r.status !== 202) throw new Error(`POST ${r.status}`);
        const ok = await sock.waitFirst(r.body.reply_id, cfg.sampleTimeoutMs);
        const at = sock.rec(r.body.reply_id).firstAt;
        if (!ok || at === undefined) throw new Error('no first delta');
        if (keep) samples.ws.push(at - t0);
        // One reply at a time: the next sample starts on an idle pipeline.
        await sock.waitDone(r.body.reply_id, cfg.sampleTimeoutMs);
      } catch {
        errors.ws++;
      }
      try {
        const o = await firstContentMs(viaGateway, persona.id, `question ${i}`);
        if (keep) samples.openai.push(o);
      } catch {
        errors.openai++;
      }
      if ((i + 1) % 50 === 0) console.log(`[${mode}] ${i + 1}/${cfg.warmup + cfg.samples}`);
    }
    sock.ws.close();
    const d = summary(samples.direct);
    const added = (s) => ({ p50: r1(s.p50 - d.p50), p90: r1(s.p90 - d.p50), p99: r1(s.p99 - d.p50) });
    const ws = summary(samples.ws);
    const oa = summary(samples.openai);
    return { mode, processes: list.length, directFirstTokenMs: d, wsFirstDeltaMs: ws, openaiFirstTokenMs: oa, addedMs: { ws: added(ws), openai: added(oa) }, errors };
  } catch (err) {
    if (list) dump(list);
    throw err;
  } finally {
    if (list) for (const p of [...list].reverse()) await stopProc(p);
    await servers?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// ---- main -----------------------------------------------------------------------------------
configureLogger({ silent: true });
let llm;
const onSignal = async () => {
  await stopAll();
  await llm?.stop();
  process.exit(130);
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);

const TARGETS = { all: { p50: 10, p99: 40 }, kafka: { p50: 25, p99: 100 } };
const results = [];
let exitCode = 0;
const load = { before: loadavg() };
try {
  llm = await startDevModel({ logger: getLogger('bench-llm'), script: { ttftMs: cfg.ttftMs, replyTokens: cfg.replyTokens } });
  console.log(`scripted LLM at ${llm.endpoint.baseUrl}: TTFT ${cfg.ttftMs} ms, ${cfg.replyTokens}-token replies`);
  for (const mode of cfg.modes) {
    if (mode !== 'all' && mode !== 'kafka') throw new Error(`unknown mode ${mode} (all, kafka)`);
    if (mode === 'kafka' && (!process.env.DATABASE_URL || !process.env.KAFKA_BROKERS)) {
      console.log('[kafka] SKIPPED: DATABASE_URL and KAFKA_BROKERS are not both set (start them with `scripts/infra up` and `eval "$(scripts/infra env)"`)');
      results.push({ mode, skipped: 'DATABASE_URL or KAFKA_BROKERS unset' });
      continue;
    }
    results.push(await runMode(mode, llm));
  }
} catch (err) {
  console.error('bench failed:', err instanceof Error ? err.stack : err);
  exitCode = 1;
} finally {
  await stopAll();
  await llm?.stop();
}
load.after = loadavg();

const ran = results.filter((r) => !r.skipped);
if (ran.length) {
  const row = (label, f) => `${label.padEnd(40)}${ran.map((r) => String(f(r)).padStart(18)).join('')}`;
  const fmt = (s) => `${s.p50} / ${s.p99}`;
  console.log('');
  console.log(row('first token, ms (p50 / p99)', (r) => r.mode));
  console.log(row('direct to the scripted LLM', (r) => fmt(r.directFirstTokenMs)));
  console.log(row('POST → first reply.delta (WebSocket)', (r) => fmt(r.wsFirstDeltaMs)));
  console.log(row('/v1/chat/completions stream', (r) => fmt(r.openaiFirstTokenMs)));
  console.log(row('added: WebSocket', (r) => fmt(r.addedMs.ws)));
  console.log(row('added: OpenAI-compatible', (r) => fmt(r.addedMs.openai)));
  console.log(row('target added (p50 / p99)', (r) => fmt(TARGETS[r.mode])));
  console.log(row('errors (direct/ws/openai)', (r) => `${r.errors.direct}/${r.errors.ws}/${r.errors.openai}`));
  console.log(`load average before ${load.before.map((x) => x.toFixed(2)).join(' ')}, after ${load.after.map((x) => x.toFixed(2)).join(' ')} (${cpus().length} cores)`);
}

mkdirSync(join(ROOT, 'bench-results'), { recursive: true });
const file = join(ROOT, 'bench-results', `latency-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(
  file,
  JSON.stringify({ bench: 'latency', at: new Date().toISOString(), config: cfg, targets: TARGETS, machine: { cpus: cpus().length, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, loadavg: load }, results }, null, 2),
);
console.log(`\nwrote ${file}`);
process.exit(exitCode);
