// Pipeline benchmark: N sessions × M messages through the public API (POST message → first
// reply.delta on the session WebSocket → reply.completed), against the scripted LLM server of
// @chat/devmodel, in `all` mode (one process, embedded defaults) and, when DATABASE_URL and
// KAFKA_BROKERS are set, in multi-process Kafka mode (5 processes, on a database and a Kafka
// namespace of their own on those servers). Prints a table and writes
// bench-results/pipeline-<timestamp>.json. Needs `npm run build` first.
//
//   npm run bench:pipeline -- [--sessions=40] [--messages=10] [--ttft-ms=20] [--tokens-per-s=200]
//                             [--reply-tokens=20] [--modes=all,kafka] [--turn-timeout-ms=30000]
// Each option may also be given as an env var: BENCH_SESSIONS, BENCH_MESSAGES, BENCH_TTFT_MS, ...
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { startDevModel } from '@chat/devmodel';
import { configureLogger, getLogger } from '@chat/logger';
import { apiClient, freePort, isolatedServers, must, opt, productProcesses, ROOT, sleep, summary } from './lib/bench.mjs';

const cfg = {
  sessions: opt('sessions', 40),
  messages: opt('messages', 10),
  ttftMs: opt('ttft-ms', 20),
  tokensPerS: opt('tokens-per-s', 200),
  replyTokens: opt('reply-tokens', 20),
  modes: opt('modes', 'all,kafka').split(',').map((s) => s.trim()).filter(Boolean),
  turnTimeoutMs: opt('turn-timeout-ms', 30_000),
  llmProbes: opt('llm-probes', 100),
  readyTimeoutMs: opt('ready-timeout-ms', 120_000),
};

const KEY = 'bench-key-0123456789abcdef';
const API_KEYS = `bench:${KEY}`;
// One client sends every request on purpose: the per-key and per-session rate limits are raised.
const RATE_LIMITS = {
  RATE_LIMIT_KEY_PER_MINUTE: '10000000',
  RATE_LIMIT_KEY_BURST: '1000000',
  RATE_LIMIT_SESSION_PER_MINUTE: '10000000',
  RATE_LIMIT_SESSION_BURST: '1000000',
  MAX_STREAMS_PER_OWNER: '100000',
};
// ---- CPU time of the processes under test (Linux /proc; undefined elsewhere) ------------------
// A figure that the other work on a shared machine disturbs much less than wall-clock throughput:
// CPU ms per turn, of each process and its descendants (in `all` mode the embedded PostgreSQL's
// backends are children of the product's process; in Kafka mode the shared PostgreSQL and Kafka are not).
const CLK_TCK = 100;
function procStat(pid) {
  try {
    const raw = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = raw.slice(raw.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK };
  } catch {
    return undefined;
  }
}
function treeCpuMs(rootPid) {
  let entries;
  try {
    entries = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return undefined;
  }
  const children = new Map();
  const stats = new Map();
  for (const d of entries) {
    const st = procStat(Number(d));
    if (!st) continue;
    stats.set(Number(d), st);
    const list = children.get(st.ppid) ?? [];
    list.push(Number(d));
    children.set(st.ppid, list);
  }
  let total = 0;
  const stack = [rootPid];
  while (stack.length) {
    const pid = stack.pop();
    total += stats.get(pid)?.cpuMs ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return stats.has(rootPid) ? total : undefined;
}
const cpuOf = (list) =>
  Object.fromEntries(list.flatMap((p) => [[p.name, treeCpuMs(p.child.pid)], [`${p.name}:node-only`, procStat(p.child.pid)?.cpuMs]]));

// ---- processes and API ----------------------------------------------------------------------
const { startProc, stopProc, stopAll, dump, startMesh, waitReady: waitReadyWithin } = productProcesses({ keepLines: 500 });
const waitReady = (base, list) => waitReadyWithin(base, list, cfg.readyTimeoutMs);
const call = apiClient(KEY);

/** A session socket that records, per reply, the arrival of the first delta, the completions and the seqs. */
function openSocket(wsBase, sessionId, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/ws/sessions/${sessionId}?ws_token=${encodeURIComponent(token)}`);
    const replies = new Map();
    const completedOrder = [];
    const waiters = new Map();
    const rec = (id) => {
      let r = replies.get(id);
      if (!r) replies.set(id, (r = { firstDeltaAt: undefined, doneAt: undefined, completed: 0, failed: 0, seqs: [] }));
      return r;
    };
    ws.on('message', (data) => {
      const now = performance.now();
      let f;
      try {
        f = JSON.parse(data.toString());
      } catch {
        return;
      }
      if (!f?.reply_id) return;
      const r = rec(f.reply_id);
      if (typeof f.seq === 'number') r.seqs.push(f.seq);
      if (f.type === 'reply.delta') r.firstDeltaAt ??= now;
      if (f.type === 'reply.completed' || f.type === 'reply.failed') {
        if (f.type === 'reply.completed') {
          r.completed++;
          completedOrder.push(f.reply_id);
        } else {
          r.failed++;
          r.error = f.error;
        }
        r.doneAt ??= now;
        waiters.get(f.reply_id)?.();
      }
    });
    ws.once('open', () =>
      resolve({
        ws,
        replies,
        completedOrder,
        rec,
        waitDone(id, timeoutMs) {
          const r = rec(id);
          if (r.doneAt !== undefined) return Promise.resolve(true);
          return new Promise((res) => {
            const t = setTimeout(() => {
              waiters.delete(id);
              res(false);
            }, timeoutMs);
            waiters.set(id, () => {
              clearTimeout(t);
              waiters.delete(id);
              res(true);
            });
          });
        },
      }),
    );
    ws.once('unexpected-response', (_q, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

// ---- the LLM's own TTFT, measured directly --------------------------------------------------
async function measureLlm(endpoint, probes, concurrency) {
  const client = new OpenAI({ baseURL: endpoint.baseUrl, apiKey: endpoint.apiKey, maxRetries: 0, timeout: 10_000 });
  const ttft = [];
  const total = [];
  let next = 0;
  const worker = async () => {
    while (next < probes) {
      next++;
      const t0 = performance.now();
      const stream = await client.chat.completions.create({ model: endpoint.model, stream: true, messages: [{ role: 'user', content: 'probe' }] });
      let first;
      for await (const c of stream) if (c.choices[0]?.delta.content && first === undefined) first = performance.now() - t0;
      ttft.push(first ?? NaN);
      total.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, probes)) }, worker));
  return { concurrency, ttftMs: summary(ttft), replyMs: summary(total) };
}

// ---- one mode -------------------------------------------------------------------------------
async function runMode(mode, llm) {
  const dataDir = mkdtempSync(join(tmpdir(), `chat-bench-${mode}-`));
  const http = await freePort();
  const base = `http://127.0.0.1:${http}`;
  const llmEnv = { ...RATE_LIMITS, LLM_BASE_URL: llm.endpoint.baseUrl, LLM_API_KEY: 'bench-llm-key', LLM_MODEL: llm.endpoint.model };
  let list;
  let servers;
  try {
    if (mode === 'all') {
      list = [startProc('all', 'all', { ...llmEnv, DATA_DIR: dataDir, GATEWAY_HTTP_LISTEN: `127.0.0.1:${http}`, API_KEYS })];
    } else {
      // A database and a Kafka namespace of this run's own, on the shared servers.
      servers = await isolatedServers('bench_pipeline');
      const milvus = process.env.MILVUS_ADDRESS ? { MILVUS_ADDRESS: process.env.MILVUS_ADDRESS } : {};
      list = await startMesh({ ...llmEnv, ...servers.env, ...milvus, DATA_DIR: dataDir, API_KEYS, WS_TOKEN_SECRET: 'bench-ws-token-secret-0123456789abcdef' }, http);
    }
    const tStart = performance.now();
    await waitReady(base, list);
    console.log(`[${mode}] ready in ${Math.round(performance.now() - tStart)} ms; ${cfg.sessions} sessions × ${cfg.messages} messages`);

    const persona = must(
      await call(base, 'POST', '/api/personas', { name: `Bench ${mode} ${Date.now()}`, system_prompt: 'You are a benchmark persona. Answer briefly.' }),
      201,
      'create persona',
    );
    const sessions = [];
    for (let i = 0; i < cfg.sessions; i++) {
      const s = must(await call(base, 'POST', '/api/sessions', { persona_id: persona.id, title: `bench ${i}` }), 201, 'create session');
      const tok = must(await call(base, 'POST', `/api/sessions/${s.id}/ws_token`), 200, 'ws_token');
      sessions.push({ id: s.id, sock: await openSocket(base.replace(/^http/, 'ws'), s.id, tok.ws_token), sent: [], errors: [] });
    }

    // One warm-up turn per session (counted for correctness, not for speed).
    const turn = async (s, i, warm) => {
      const t0 = performance.now();
      const r = await call(base, 'POST', `/api/sessions/${s.id}/messages`, { content: `${warm ? 'warm-up' : 'question'} ${i} of session ${s.id}` });
      if (r.status !== 202) {
        s.errors.push(`POST ${r.status}: ${JSON.stringify(r.body).slice(0, 200)}`);
        return;
      }
      const sent = { replyId: r.body.reply_id, messageId: r.body.message_id, t0, postMs: performance.now() - t0, warm };
      s.sent.push(sent);
      sent.done = await s.sock.waitDone(sent.replyId, cfg.turnTimeoutMs);
    };
    await Promise.all(sessions.map((s) => turn(s, 0, true)));
    const llmBefore = llm.stats.completions;
    const cpuBefore = cpuOf(list);
    const benchCpuBefore = process.cpuUsage();
    const loadBefore = loadavg()[0];
    const t0 = performance.now();
    await Promise.all(
      sessions.map(async (s) => {
        for (let i = 1; i <= cfg.messages; i++) await turn(s, i, false);
      }),
    );
    const wallMs = performance.now() - t0;
    const cpuAfter = cpuOf(list);
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const loadAfter = loadavg()[0];
    const timedTurns = cfg.sessions * cfg.messages;
    const cpuMsPerTurn = {};
    for (const [name, after] of Object.entries(cpuAfter)) {
      const before = cpuBefore[name];
      if (after !== undefined && before !== undefined) cpuMsPerTurn[name] = Math.round(((after - before) / timedTurns) * 100) / 100;
    }
    const llmCalls = llm.stats.completions - llmBefore;

    // Correctness: sockets, then the stored sessions.
    await sleep(500);
    let lost = 0;
    let failed = 0;
    let dupFrames = 0;
    let reorderedSessions = 0;
    let seqGaps = 0;
    let dupStored = 0;
    let missingStored = 0;
    let postErrors = 0;
    const failures = {};
    const firstToken = [];
    const completedMs = [];
    const postMs = [];
    for (const s of sessions) {
      postErrors += s.errors.length;
      for (const m of s.sent) {
        const r = s.sock.rec(m.replyId);
        if (r.completed === 0 && r.failed === 0) lost++;
        if (r.failed > 0) {
          failed++;
          const code = r.error?.code ?? 'unknown';
          failures[code] ??= { count: 0, example: r.error?.message };
          failures[code].count++;
        }
        if (r.completed + r.failed > 1) dupFrames++;
        for (let i = 1; i < r.seqs.length; i++) if (r.seqs[i] !== r.seqs[i - 1] + 1) seqGaps++;
        if (!m.warm && r.firstDeltaAt !== undefined) firstToken.push(r.firstDeltaAt - m.t0);
        if (!m.warm && r.doneAt !== undefined) completedMs.push(r.doneAt - m.t0);
        if (!m.warm) postMs.push(m.postMs);
      }
      const order = s.sent.map((m) => m.replyId);
      const seen = s.sock.completedOrder.filter((id) => order.includes(id));
      const firstSeen = [...new Set(seen)];
      const expected = order.filter((id) => firstSeen.includes(id));
      if (firstSeen.join() !== expected.join()) reorderedSessions++;
      // The message list is paged (at most 200 a page): a bounded bench checks the newest 200 (100 turns).
      const view = await call(base, 'GET', `/api/sessions/${s.id}/messages?limit=200`);
      if (view.status !== 200) {
        missingStored += s.sent.length;
        continue;
      }
      const assistants = view.body.messages.filter((m) => m.role === 'assistant');
      const byId = new Map();
      for (const a of assistants) byId.set(a.id, (byId.get(a.id) ?? 0) + 1);
      dupStored += [...byId.values()].filter((n) => n > 1).length + (s.sent.length <= 100 ? Math.max(0, assistants.length - s.sent.length) : 0);
      missingStored += s.sent.slice(-100).filter((m) => !assistants.some((a) => a.id === m.replyId && a.status === 'completed')).length;
    }
    for (const s of sessions) s.sock.ws.close();
    if (failed > 0 || lost > 0) dump(list);

    const turns = completedMs.length;
    return {
      mode,
      processes: list.length,
      sessions: cfg.sessions,
      messagesPerSession: cfg.messages,
      turnsMeasured: turns,
      wallMs: Math.round(wallMs),
      turnsPerSecond: Math.round((turns / wallMs) * 1000 * 10) / 10,
      cpuMsPerTurn,
      // The bench's own process: the load generator (sockets, HTTP) and the scripted LLM.
      benchCpuMsPerTurn: Math.round(((benchCpu.user + benchCpu.system) / 1000 / (cfg.sessions * cfg.messages)) * 100) / 100,
      loadAverage: { before: Math.round(loadBefore * 10) / 10, after: Math.round(loadAfter * 10) / 10 },
      llmCompletionCalls: llmCalls,
      postAcceptedMs: summary(postMs),
      postToFirstTokenMs: summary(firstToken),
      postToCompletedMs: summary(completedMs),
      correctness: { lost, failed, duplicatedCompletedFrames: dupFrames, duplicatedStoredAssistant: dupStored, missingStoredCompleted: missingStored, reorderedSessions, seqNotPlusOne: seqGaps, postErrors, failures },
    };
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

const results = [];
let exitCode = 0;
try {
  llm = await startDevModel({ logger: getLogger('bench-llm'), script: { ttftMs: cfg.ttftMs, tokensPerSecond: cfg.tokensPerS, replyTokens: cfg.replyTokens } });
  console.log(`scripted LLM at ${llm.endpoint.baseUrl}: TTFT ${cfg.ttftMs} ms, ${cfg.tokensPerS} tokens/s, ${cfg.replyTokens}-token replies`);
  for (const mode of cfg.modes) {
    if (mode === 'kafka' && (!process.env.DATABASE_URL || !process.env.KAFKA_BROKERS)) {
      console.log('[kafka] SKIPPED: DATABASE_URL and KAFKA_BROKERS are not both set (start them with `scripts/infra up` and `eval "$(scripts/infra env)"`)');
      results.push({ mode, skipped: 'DATABASE_URL or KAFKA_BROKERS unset' });
      continue;
    }
    if (mode !== 'all' && mode !== 'kafka') throw new Error(`unknown mode ${mode} (all, kafka)`);
    // The LLM's own TTFT, measured from this process with the openai client: alone (the base of
    // the added latency) and at the bench's concurrency (how much the client side itself adds).
    const llmAlone = await measureLlm(llm.endpoint, Math.min(cfg.llmProbes, 30), 1);
    const llmDirect = await measureLlm(llm.endpoint, cfg.llmProbes, cfg.sessions);
    const r = await runMode(mode, llm);
    r.llmAlone = llmAlone;
    r.llmDirect = llmDirect;
    const base = llmAlone.ttftMs.p50 ?? 0;
    const ft = r.postToFirstTokenMs;
    r.addedFirstTokenMs = { overLlmTtftP50: base, p50: ft.p50 === null ? null : Math.round((ft.p50 - base) * 10) / 10, p95: ft.p95 === null ? null : Math.round((ft.p95 - base) * 10) / 10, p99: ft.p99 === null ? null : Math.round((ft.p99 - base) * 10) / 10 };
    results.push(r);
  }
} catch (err) {
  console.error('bench failed:', err instanceof Error ? err.stack : err);
  exitCode = 1;
} finally {
  await stopAll();
  await llm?.stop();
}

const ran = results.filter((r) => !r.skipped);
if (ran.length) {
  const row = (label, f) => `${label.padEnd(34)}${ran.map((r) => String(f(r)).padStart(20)).join('')}`;
  const c = (r) => r.correctness;
  console.log(`\n${row('', (r) => r.mode)}`);
  console.log(row('processes', (r) => r.processes));
  console.log(row('turns measured', (r) => r.turnsMeasured));
  console.log(row('turns/s', (r) => r.turnsPerSecond));
  console.log(row('CPU ms per turn (product)', (r) => {
    const v = Object.entries(r.cpuMsPerTurn ?? {}).filter(([k]) => !k.endsWith(':node-only')).map(([, x]) => x);
    return v.length ? Math.round(v.reduce((a, b) => a + b, 0) * 100) / 100 : 'n/a';
  }));
  console.log(row('  of which Node processes', (r) => {
    const v = Object.entries(r.cpuMsPerTurn ?? {}).filter(([k]) => k.endsWith(':node-only')).map(([, x]) => x);
    return v.length ? Math.round(v.reduce((a, b) => a + b, 0) * 100) / 100 : 'n/a';
  }));
  console.log(row('CPU ms per turn (bench + LLM)', (r) => r.benchCpuMsPerTurn ?? 'n/a'));
  console.log(row('load average before/after', (r) => `${r.loadAverage?.before}/${r.loadAverage?.after}`));
  console.log(row('LLM TTFT alone p50/p99 ms', (r) => `${r.llmAlone.ttftMs.p50}/${r.llmAlone.ttftMs.p99}`));
  console.log(row(`LLM TTFT ×${cfg.sessions} p50/p99 ms`, (r) => `${r.llmDirect.ttftMs.p50}/${r.llmDirect.ttftMs.p99}`));
  console.log(row('POST accepted p50/p99 ms', (r) => `${r.postAcceptedMs.p50}/${r.postAcceptedMs.p99}`));
  console.log(row('POST→first token p50 ms', (r) => r.postToFirstTokenMs.p50));
  console.log(row('POST→first token p95 ms', (r) => r.postToFirstTokenMs.p95));
  console.log(row('POST→first token p99 ms', (r) => r.postToFirstTokenMs.p99));
  console.log(row('added 1st-token p50/p95/p99 ms', (r) => `${r.addedFirstTokenMs.p50}/${r.addedFirstTokenMs.p95}/${r.addedFirstTokenMs.p99}`));
  console.log(row('POST→completed p50/p99 ms', (r) => `${r.postToCompletedMs.p50}/${r.postToCompletedMs.p99}`));
  console.log(row('lost / failed', (r) => `${c(r).lost}/${c(r).failed}`));
  console.log(row('duplicated frames / stored', (r) => `${c(r).duplicatedCompletedFrames}/${c(r).duplicatedStoredAssistant}`));
  console.log(row('reordered sessions / seq gaps', (r) => `${c(r).reorderedSessions}/${c(r).seqNotPlusOne}`));
  console.log(row('missing stored / POST errors', (r) => `${c(r).missingStoredCompleted}/${c(r).postErrors}`));
}
for (const r of ran) for (const [code, f] of Object.entries(r.correctness.failures)) console.log(`${r.mode}: ${f.count} reply.failed with code ${code}: ${f.example}`);
for (const r of results.filter((x) => x.skipped)) console.log(`${r.mode}: skipped (${r.skipped})`);

mkdirSync(join(ROOT, 'bench-results'), { recursive: true });
const file = join(ROOT, 'bench-results', `pipeline-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(
  file,
  `${JSON.stringify({ at: new Date().toISOString(), machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version }, config: cfg, results, ...(exitCode ? { error: true } : {}) }, null, 2)}\n`,
);
console.log(`\nwrote ${file}`);
process.exit(exitCode);
