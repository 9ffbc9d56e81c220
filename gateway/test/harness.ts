import { configureLogger, getLogger, tapLogs } from '@chat/logger';
import { InProcessBus } from '@chat/events';
import type { FastifyInstance } from 'fastify';
import { WebSocket } from 'ws';
import { ApiKeyAuth, WsTokens } from '../src/auth.js';
import type { GatewayDeps } from '../src/deps.js';
import { GatewayLimits } from '../src/limits.js';
import { buildDocument, ResponseChecker } from '../src/openapi/index.js';
import { buildApp, type Gateway } from '../src/server.js';
import { startGateway, type RunningGateway } from '../src/start.js';
import { FakeKeyStore, FakePersonas, FakeRag, FakeScheduler, FakeSessions } from './fakes.js';

// Quiet console, everything still reaches tapLogs.
configureLogger({ level: 'debug', silent: true });

/*
 * Every response a gateway test receives is checked against the served OpenAPI document
 * (`checkResponses`, installed by testApp/testServer through deps.decorate), and every WebSocket
 * frame a FrameClient receives against its ServerFrame schema. A mismatch fails the test that
 * caused it (the root afterEach below).
 */
const contractProblems: string[] = [];

afterEach(function () {
  if (contractProblems.length === 0) return;
  const problems = contractProblems.splice(0);
  throw new Error(`responses that do not match the OpenAPI document (/openapi.json):\n  ${problems.join('\n  ')}`);
});

/** takeContractProblems returns and clears the recorded mismatches (for tests of the check itself). */
export function takeContractProblems(): string[] {
  return contractProblems.splice(0);
}

/** checkResponses adds an onSend hook checking every response against the app's OpenAPI document. */
export function checkResponses(app: FastifyInstance): void {
  let checker: ResponseChecker | undefined;
  app.addHook('onSend', async (req, reply, payload) => {
    try {
      checker ??= new ResponseChecker((app as unknown as { openapiDocument: () => Record<string, unknown> }).openapiDocument());
    } catch (err) {
      contractProblems.push(`the OpenAPI document cannot be built: ${(err as Error).message}`);
      return payload;
    }
    if ((req.routeOptions.schema as { hide?: boolean } | undefined)?.hide) return payload;
    const body = payload === undefined || payload === null ? '' : typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : undefined;
    if (body === undefined) return payload; // a stream: documented by content type only
    const contentType = reply.getHeader('content-type');
    contractProblems.push(
      ...checker.check({ method: req.method, route: req.routeOptions.url, status: reply.statusCode, contentType: typeof contentType === 'string' ? contentType : undefined, body }),
    );
    return payload;
  });
}

/** The document's frame schemas (they do not depend on the routes). */
const frameChecker = new ResponseChecker(buildDocument([], { title: 'frames', version: '0', description: '' }));

/** checkFrame records a server frame that does not match the ServerFrame schema. */
export function checkFrame(frame: unknown): void {
  contractProblems.push(...frameChecker.validateComponent('ServerFrame', frame));
}

/** checkErrorBody records an error body (e.g. of a refused WebSocket upgrade) that is not ErrorBody. */
export function checkErrorBody(body: string): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = body;
  }
  contractProblems.push(...frameChecker.validateComponent('ErrorBody', parsed));
}

/** Limits high enough that only the limit tests meet them. */
export const generousLimits = () => new GatewayLimits({ perKey: { perMinute: 100_000, burst: 100_000 }, perSession: { perMinute: 100_000, burst: 100_000 } });

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
  keys: FakeKeyStore;
  clock: Clock;
}

export function makeDeps(overrides: Partial<GatewayDeps> = {}): Harness {
  const personas = new FakePersonas();
  const sessions = new FakeSessions();
  const rag = new FakeRag();
  const scheduler = new FakeScheduler();
  const clock = new Clock();
  const keys = new FakeKeyStore();
  const deps: GatewayDeps = {
    persona: personas,
    session: sessions,
    rag,
    scheduler,
    auth: new ApiKeyAuth(
      [
        { owner: 'alice', key: ALICE_KEY },
        { owner: 'bob', key: BOB_KEY },
      ],
      { store: keys, now: clock.now },
    ),
    tokens: new WsTokens('test-secret-test-secret-test-secret-0', 60_000, clock.now, keys),
    logger: getLogger('gateway-test'),
    limits: generousLimits(),
    decorate: checkResponses,
    ...overrides,
  };
  return { deps, personas, sessions, rag, scheduler, keys, clock };
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
      const frame = JSON.parse(data.toString()) as Record<string, unknown>;
      checkFrame(frame);
      this.frames.push(frame);
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
export function connect(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ client: FrameClient; status?: undefined } | { client?: undefined; status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.on('open', () => resolve({ client: new FrameClient(ws) }));
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        req.destroy();
        checkErrorBody(body);
        resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
      });
    });
    ws.on('error', reject);
  });
}

export const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
