import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';

/** The compiled entry point, as `npm start` runs it. */
export const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');
/** The repository root. */
export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', '..');

/** Proc is a started product process with its captured output. */
export interface Proc {
  name: string;
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

/** startProc runs main.js with the given target and environment (never the caller's secrets). */
export function startProc(name: string, target: string, env: Record<string, string>): Proc {
  const child = spawn(process.execPath, ['--enable-source-maps', MAIN, `--target=${target}`], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (b: Buffer) => {
    output.push(...b.toString().split('\n').filter(Boolean));
    if (output.length > 2000) output.splice(0, output.length - 2000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { name, child, output, exited };
}

/** stopProc sends SIGTERM and returns the exit code (SIGKILL after a bound). */
export async function stopProc(p: Proc, timeoutMs = 20_000): Promise<number | null> {
  if (p.child.exitCode !== null) return p.child.exitCode;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const code = await p.exited;
  clearTimeout(timer);
  return code;
}

/** dumpOutput prints the tail of each process's log, for a failing test. */
export function dumpOutput(procs: Proc[]): void {
  for (const p of procs) process.stderr.write(`\n--- ${p.name} (last lines) ---\n${p.output.slice(-40).join('\n')}\n`);
}

/** StopWaiting, thrown by a waitFor condition, ends the wait at once (e.g. a process it waits on exited). */
export class StopWaiting extends Error {}

/** waitFor polls fn until it returns a value other than undefined, or fails after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000, everyMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof StopWaiting) throw new Error(`gave up waiting for ${what}: ${err.message}`);
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

/** Api is a tiny client of the public REST API. */
export class Api {
  constructor(
    readonly base: string,
    readonly key: string | undefined,
  ) {}
  async call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
    const h: Record<string, string> = { ...headers };
    if (this.key) h.authorization = `Bearer ${this.key}`;
    let payload: string | undefined;
    if (body !== undefined) {
      h['content-type'] ??= 'application/json';
      payload = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await fetch(`${this.base}${path}`, { method, headers: h, body: payload });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      /* keep text */
    }
    return { status: res.status, body: parsed };
  }
}

/** assertError checks an API.md error body with the expected status and code. */
export function assertError(res: { status: number; body: any }, status: number, code?: string): void {
  assert.equal(res.status, status, `expected ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
  assert.equal(typeof res.body?.error?.code, 'string', `no error body: ${JSON.stringify(res.body)}`);
  assert.equal(typeof res.body.error.message, 'string');
  assert.equal(typeof res.body.error.details, 'object');
  if (code) assert.equal(res.body.error.code, code);
  assert.ok(!JSON.stringify(res.body).includes('    at '), 'a stack trace leaked');
}

/** Frames collects WebSocket frames. */
export class Frames {
  readonly frames: any[] = [];
  private waiters: Array<() => void> = [];
  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()));
      for (const w of this.waiters.splice(0)) w();
    });
  }
  async until(pred: (f: any) => boolean, timeoutMs = 20_000): Promise<any> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(pred);
      if (found) return found;
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no matching frame; got ${JSON.stringify(this.frames).slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/** openSocket connects to the session socket; rejects with the HTTP status when the upgrade is refused. */
export function openSocket(wsBase: string, sessionId: string, token: string | undefined): Promise<WebSocket> {
  const url = `${wsBase}/ws/sessions/${sessionId}${token === undefined ? '' : `?ws_token=${encodeURIComponent(token)}`}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })));
    ws.once('error', reject);
  });
}

/** waitReady waits until the gateway at base answers /readyz, failing early if a process exits. */
export async function waitReady(base: string, procs: Proc[]): Promise<void> {
  await waitFor(
    'the gateway to be ready',
    async () => {
      for (const p of procs) if (p.child.exitCode !== null) throw new StopWaiting(`${p.name} exited with ${p.child.exitCode}`);
      const r = await fetch(`${base}/readyz`).catch(() => undefined);
      return r?.status === 200 ? true : undefined;
    },
    90_000,
    200,
  );
}
