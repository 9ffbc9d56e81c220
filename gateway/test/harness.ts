import { configureLogger, getLogger, tapLogs } from '@chat/logger';
import { InProcessBus } from '@chat/events';
import { WebSocket } from 'ws';
import { ApiKeyAuth, WsTokens } from '../src/auth.js';
import type { GatewayDeps } from '../src/deps.js';
import { buildApp, type Gateway } from '../src/server.js';
import { startGateway, type RunningGateway } from '../src/start.js';
import { FakePersonas, FakeRag, FakeScheduler, FakeSessions } from './fakes.js';

// Quiet console, everything still reaches tapLogs.
configureLogger({ level: 'debug', silent: true });

export const ALICE_KEY = 'alice-key-0123456789abcdef';
export const BOB_KEY = 'bob-key-0123456789abcdef';
export const alice = { authorization: `Bearer ${ALICE_KEY}` };
export const bob = { authorization: `Bearer ${BOB_KEY}` };

/** A controllable clock for token expiry. */
export class Clock {
  t = Date.now();
  now = () => this.t;
}

export interface Harness {
  deps: GatewayDeps;
  personas: FakePersonas;
  sessions: FakeSessions;
  rag: FakeRag;
  scheduler: FakeScheduler;
  clock: Clock;
}

export function makeDeps(overrides: Partial<GatewayDeps> = {}): Harness {
  const personas = new FakePersonas();
  const sessions = new FakeSessions();
  const rag = new FakeRag();
  const scheduler = new FakeScheduler();
  const clock = new Clock();
  const deps: GatewayDeps = {
    persona: personas,
    session: sessions,
    rag,
    scheduler,
    auth: new ApiKeyAuth([
      { owner: 'alice', key: ALICE_KEY },
      { owner: 'bob', key: BOB_KEY },
    ]),
    tokens: new WsTokens('test-secret-test-secret-test-secret-0', 60_000, clock.now),
    logger: getLogger('gateway-test'),
    ...overrides,
  };
  return { deps, personas, sessions, rag, scheduler, clock };
}

/** testApp builds an app (not listening) over fakes. */
export function testApp(overrides: Partial<GatewayDeps> = {}): Harness & { gateway: Gateway } {
  const h = makeDeps(overrides);
  const gateway = buildApp(h.deps);
  gateway.setReady(true);
  return { ...h, gateway };
}

/** testServer starts a listening gateway over fakes and an in-process bus. */
export async function testServer(overrides: Partial<GatewayDeps> = {}): Promise<Harness & { running: RunningGateway; bus: InProcessBus; wsUrl: string }> {
  const h = makeDeps(overrides);
  const bus = new InProcessBus();
  const running = await startGateway({ ...h.deps, bus, host: '127.0.0.1', port: 0 });
  return { ...h, running, bus, wsUrl: running.url.replace(/^http/, 'ws') };
}

/** captureLogs collects every log line until stopped. */
export function captureLogs(): { lines: string[]; stop: () => void } {
  const lines: string[] = [];
  const stop = tapLogs((l) => lines.push(l));
  return { lines, stop };
}

/** A WebSocket client that queues incoming JSON frames. */
export class FrameClient {
  private readonly frames: Array<Record<string, unknown>> = [];
  private waiters: Array<() => void> = [];
  closed: Promise<{ code: number; reason: string }>;

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Record<string, unknown>);
      for (const w of this.waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** next waits for the next frame (of a type, skipping others) within timeoutMs. */
  async next(type?: string, timeoutMs = 2_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.frames.findIndex((f) => type === undefined || f.type === type);
      if (i >= 0) return this.frames.splice(i, 1)[0]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type ?? ''} frame within ${timeoutMs} ms; have ${JSON.stringify(this.frames)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  close(): void {
    this.ws.close();
  }
}

/** connect opens a WebSocket; it resolves with the client, or with the HTTP status of a refusal. */
export function connect(url: string): Promise<{ client: FrameClient; status?: undefined } | { client?: undefined; status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.on('open', () => resolve({ client: new FrameClient(ws) }));
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        req.destroy();
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    ws.on('error', reject);
  });
}

export const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
