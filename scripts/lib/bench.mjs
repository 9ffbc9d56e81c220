// What the benchmarks share: options, ports, percentiles, the product's processes, API calls.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loopbackMesh } from '@chat/clients';
import { isolatedDatabase } from '@chat/db';
import { getLogger } from '@chat/logger';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const MAIN = join(ROOT, 'services', 'launcher', 'dist', 'src', 'main.js');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** opt reads `--name=value`, else the env var BENCH_NAME, else the default (numbers checked). */
export function opt(name, def) {
  const arg = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`));
  const env = process.env[`BENCH_${name.toUpperCase().replace(/-/g, '_')}`];
  const raw = arg ? arg.slice(name.length + 3) : env;
  if (raw === undefined || raw === '') return def;
  if (typeof def === 'number') {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got ${raw}`);
    return n;
  }
  return raw;
}

/** freePort returns a loopback port nothing listens on. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** pct is the p-th percentile (nearest rank) of sorted values, or null. */
export function pct(sorted, p) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i];
}

const r1 = (v) => (v === null || v === undefined ? null : Math.round(v * 10) / 10);

/** summary of the finite values: count, p50/p90/p95/p99, max and mean, to 0.1. */
export function summary(values) {
  const s = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  return {
    n: s.length,
    p50: r1(pct(s, 50)),
    p90: r1(pct(s, 90)),
    p95: r1(pct(s, 95)),
    p99: r1(pct(s, 99)),
    max: r1(s.at(-1) ?? null),
    mean: r1(s.length ? s.reduce((a, b) => a + b, 0) / s.length : null),
  };
}

/**
 * productProcesses starts and stops the product (`main.js --target=…`) as child processes.
 * BENCH_NODE_ARGS (e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof") profiles them; BENCH_PRODUCT_ENV
 * ("NAME=value NAME2=value") adds settings of the product, for A/B runs.
 */
export function productProcesses({ keepLines = 500 } = {}) {
  const procs = new Set();
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const pairs = (process.env.BENCH_PRODUCT_ENV ?? '').split(' ').filter(Boolean);
  const productEnv = Object.fromEntries(pairs.map((p) => [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)]));

  function startProc(name, target, env) {
    const child = spawn(process.execPath, [...nodeArgs, MAIN, `--target=${target}`], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: process.env.LOG_LEVEL ?? 'info', ...env, ...productEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const output = [];
    const keep = (b) => {
      output.push(...b.toString().split('\n').filter(Boolean));
      if (output.length > keepLines) output.splice(0, output.length - keepLines);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    const p = { name, child, output, exited };
    procs.add(p);
    return p;
  }
  async function stopProc(p) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGTERM');
      const t = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
      await p.exited;
      clearTimeout(t);
    }
    procs.delete(p);
  }
  async function stopAll() {
    for (const p of [...procs].reverse()) await stopProc(p);
  }
  function dump(list) {
    for (const p of list) process.stderr.write(`\n--- ${p.name} (last lines) ---\n${p.output.slice(-30).join('\n')}\n`);
  }
  /** waitReady: the gateway answers /readyz and every process has logged "ready" (split mode needs both). */
  async function waitReady(base, list, timeoutMs) {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      for (const p of list) if (p.child.exitCode !== null) throw new Error(`${p.name} exited with ${p.child.exitCode}`);
      const r = await fetch(`${base}/readyz`).catch(() => undefined);
      if (r?.status === 200 && list.every((p) => p.output.some((l) => l.includes('"message":"ready"')))) return;
      await sleep(200);
    }
    throw new Error('timed out waiting for /readyz');
  }
  /**
   * startMesh starts the product as one OS process per target (persona, rag, session, scheduler,
   * gateway) on loopback ports, with env shared by all; the gateway listens on `http`.
   */
  async function startMesh(env, http) {
    const [persona, session, scheduler, rag] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    const mesh = loopbackMesh({ persona, session, scheduler, rag });
    const shared = { ...env, ...mesh.addresses };
    return [
      ...['persona', 'rag', 'session', 'scheduler'].map((c) => startProc(c, c, { ...shared, ...mesh.listen(c) })),
      startProc('gateway', 'gateway', { ...shared, GATEWAY_HTTP_LISTEN: `127.0.0.1:${http}` }),
    ];
  }
  return { startProc, stopProc, stopAll, dump, waitReady, startMesh };
}

/**
 * isolatedServers gives a multi-process run a database and a Kafka namespace of its own on the
 * servers of DATABASE_URL and KAFKA_BROKERS, so other runs on them neither see nor relay its events.
 */
export async function isolatedServers(prefix) {
  const db = await isolatedDatabase(process.env.DATABASE_URL, prefix, getLogger('bench-db'));
  return {
    env: { DATABASE_URL: db.url, KAFKA_BROKERS: process.env.KAFKA_BROKERS, KAFKA_NAMESPACE: `${prefix.replace(/_/g, '-')}-${randomUUID().slice(0, 8)}` },
    drop: () => db.drop().catch(() => undefined),
  };
}

/** apiClient calls the public REST API with one API key; bodies are parsed when they are JSON. */
export function apiClient(key) {
  return async function call(base, method, path, body) {
    const headers = { authorization: `Bearer ${key}` };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let parsed = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* keep text */
    }
    return { status: res.status, body: parsed };
  };
}

/** must returns the body of an answer with the expected status, or throws naming what failed. */
export function must(res, status, what) {
  if (res.status !== status) throw new Error(`${what}: expected ${status}, got ${res.status}: ${JSON.stringify(res.body).slice(0, 500)}`);
  return res.body;
}
