import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '@chat/logger';
import { devReply, splitForStream, type WireMessage } from './reply.js';
import type { LlmEndpoint } from './endpoint.js';
import { EmbeddingsError, embeddingsResponse, type EmbeddingScript } from './embeddings.js';

/** The model id the development model answers as. */
export const DEV_MODEL_ID = 'dev-echo';
/** The API key the development model's endpoint carries; the server does not check it. */
export const DEV_MODEL_API_KEY = 'dev-model-no-key';

/** Largest request body the development model reads. */
const MAX_BODY_BYTES = 8 * 1024 * 1024;

/** DevModelOptions configure startDevModel. */
export interface DevModelOptions {
  /** Loopback host to bind; 127.0.0.1 by default. */
  host?: string;
  /** Port to bind; 0 (any free port) by default. */
  port?: number;
  logger: Logger;
  /** Pause between streamed chunks, to make streaming visible; 0 by default. */
  tokenDelayMs?: number;
  /**
   * Scripted timing and faults, for fault tests and benchmarks. Without it the server is the plain
   * development model (knowledge-quoting replies, no faults).
   */
  script?: ModelScript;
}

/** A fault (or a pause) the scripted server applies to one chat completion request. */
export type ModelFault =
  /** Answer with this HTTP error status (an OpenAI-shaped error body). */
  | { status: number; retryAfterS?: number; message?: string }
  /** Accept the request and never answer until the client goes away (or the server stops). */
  | { hang: true }
  /** Stream this many tokens, then destroy the socket mid-stream (streamed requests; a non-streamed one is reset at once). */
  | { resetAfterTokens: number }
  /** Wait this long before handling the request normally (on top of the time to first token). */
  | { delayMs: number };

/** ModelScript scripts the timing, length and faults of the development model's replies. */
export interface ModelScript {
  /** Time to first token in ms (after the request body is read); 0 by default. */
  ttftMs?: number;
  /** Streaming rate in tokens per second; unlimited (no pause) by default. */
  tokensPerSecond?: number;
  /** Reply length in tokens: a fixed lorem text, one token (word) per streamed chunk. Unset: the dev model's reply. */
  replyTokens?: number;
  /**
   * Faults: a queue consumed one per chat completion request (an exhausted queue, or an undefined
   * entry, answers normally), or a function of the 1-based request number.
   */
  faults?: Array<ModelFault | undefined> | ((requestNumber: number, request: ScriptedRequest) => ModelFault | undefined);
  /** Faults of the embeddings endpoint (POST /v1/embeddings). */
  embeddings?: EmbeddingScript;
}

/** ScriptedRequest is what a fault function sees of a chat completion request. */
export interface ScriptedRequest {
  /** The request's messages (the last one is usually the user's turn). */
  messages: ReadonlyArray<{ role: string; content?: unknown }>;
  stream: boolean;
}

/** Counters of a running (development or scripted) model. */
export interface ModelStats {
  /** HTTP requests received (any path). */
  requests: number;
  /** Chat completion requests received. */
  completions: number;
  /** Embedding requests received (POST /v1/embeddings). */
  embeddings?: number;
  /** Chat completion requests answered in full. */
  answered: number;
  /** Faults applied, by kind: status code as a string, 'hang', 'reset', 'delay'. */
  faults: Record<string, number>;
  /** Requests currently hanging. */
  hanging: number;
}

/** DevModel is a running development model. */
export interface DevModel {
  endpoint: LlmEndpoint;
  /** Live counters (the same object is updated as requests arrive). */
  stats: ModelStats;
  stop(): Promise<void>;
}

const LOREM = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua'.split(' ');

/** loremTokens is a fixed reply of n tokens (words, each with its trailing space but the last). */
export function loremTokens(n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(LOREM[i % LOREM.length]! + (i === n - 1 ? '.' : ' '));
  return out;
}

/** resetAfterFlush lets the tokens already written reach the client, then destroys the socket. */
async function resetAfterFlush(res: ServerResponse): Promise<void> {
  // An SSE comment line: clients ignore it; its callback fires once everything before it is flushed.
  await new Promise<void>((resolve) => res.write(': reset\n\n', () => resolve()));
  await new Promise((r) => setTimeout(r, 5));
  res.socket?.resetAndDestroy?.();
  res.destroy();
}

const sleep = (ms: number) => (ms > 0 ? new Promise<void>((r) => setTimeout(r, ms)) : Promise.resolve());

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly code: string | null = null,
  ) {
    super(message);
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) });
  res.end(data);
}

function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: { message: err.message, type: err.type, param: null, code: err.code } });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError(413, `request body is larger than ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', 'request_too_large'));
        req.destroy();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

interface ChatRequest {
  model: string;
  messages: WireMessage[];
  stream: boolean;
}

/** parseChatRequest checks a chat completion body the way the real API would, roughly. */
function parseChatRequest(raw: string): ChatRequest {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    throw new HttpError(400, 'the request body is not valid JSON', 'invalid_request_error', 'invalid_json');
  }
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new HttpError(400, 'the request body must be a JSON object');
  const b = body as Record<string, unknown>;
  if (!Array.isArray(b.messages) || b.messages.length === 0) {
    throw new HttpError(400, "'messages' is required and must be a non-empty array", 'invalid_request_error', 'missing_required_parameter');
  }
  for (const [i, m] of b.messages.entries()) {
    if (!m || typeof m !== 'object' || typeof (m as { role?: unknown }).role !== 'string') {
      throw new HttpError(400, `messages[${i}] must be an object with a string 'role'`, 'invalid_request_error', 'invalid_value');
    }
  }
  if (b.stream !== undefined && typeof b.stream !== 'boolean') throw new HttpError(400, "'stream' must be a boolean", 'invalid_request_error', 'invalid_type');
  return {
    model: typeof b.model === 'string' && b.model ? b.model : DEV_MODEL_ID,
    messages: b.messages as WireMessage[],
    stream: b.stream === true,
  };
}

/**
 * startDevModel runs the built-in development model: an OpenAI-compatible HTTP server on loopback
 * (`POST /v1/chat/completions`, streamed or not, and `GET /v1/models`). Its replies are labelled
 * `[development model]` and quote the knowledge passages the RAG prompt carries.
 */
export async function startDevModel(options: DevModelOptions): Promise<DevModel> {
  const host = options.host ?? '127.0.0.1';
  const delay = options.tokenDelayMs ?? 0;
  const logger = options.logger;
  const script = options.script;
  const stats: ModelStats = { requests: 0, completions: 0, answered: 0, faults: {}, hanging: 0 };
  const hanging = new Set<ServerResponse>();
  const nextFault = (n: number, request: ScriptedRequest): ModelFault | undefined => {
    const f = script?.faults;
    if (!f) return undefined;
    return typeof f === 'function' ? f(n, request) : f.shift();
  };
  const countFault = (kind: string) => {
    stats.faults[kind] = (stats.faults[kind] ?? 0) + 1;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    stats.requests++;
    const path = (req.url ?? '/').split('?')[0]!.replace(/\/+$/, '');
    if (req.method === 'GET' && path === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: [{ id: DEV_MODEL_ID, object: 'model', created: 0, owned_by: 'development' }] });
      return;
    }
    if (req.method === 'GET' && path === `/v1/models/${DEV_MODEL_ID}`) {
      sendJson(res, 200, { id: DEV_MODEL_ID, object: 'model', created: 0, owned_by: 'development' });
      return;
    }
    if (path === '/v1/embeddings') {
      if (req.method !== 'POST') throw new HttpError(405, 'use POST for embeddings', 'invalid_request_error', 'method_not_allowed');
      const raw = await readBody(req);
      stats.embeddings = (stats.embeddings ?? 0) + 1;
      const fault = script?.embeddings?.faults?.shift();
      if (fault && 'status' in fault) {
        countFault(`embeddings ${fault.status}`);
        if (fault.retryAfterS !== undefined) res.setHeader('retry-after', String(fault.retryAfterS));
        sendError(res, new HttpError(fault.status, `scripted fault: HTTP ${fault.status}`, fault.status === 429 ? 'rate_limit_error' : 'server_error', 'scripted_fault'));
        return;
      }
      if (fault && 'delayMs' in fault) await sleep(fault.delayMs);
      try {
        sendJson(res, 200, embeddingsResponse(raw));
      } catch (err) {
        if (err instanceof EmbeddingsError) throw new HttpError(400, err.message, 'invalid_request_error', 'invalid_input');
        throw err;
      }
      return;
    }
    if (path === '/v1/chat/completions') {
      if (req.method !== 'POST') throw new HttpError(405, 'use POST for chat completions', 'invalid_request_error', 'method_not_allowed');
      const chat = parseChatRequest(await readBody(req));
      const fault = nextFault(++stats.completions, { messages: chat.messages, stream: chat.stream });
      if (fault && 'status' in fault) {
        countFault(String(fault.status));
        if (fault.retryAfterS !== undefined) res.setHeader('retry-after', String(fault.retryAfterS));
        const type = fault.status === 429 ? 'rate_limit_error' : fault.status >= 500 ? 'server_error' : 'invalid_request_error';
        sendError(res, new HttpError(fault.status, fault.message ?? `scripted fault: HTTP ${fault.status}`, type, 'scripted_fault'));
        return;
      }
      if (fault && 'hang' in fault) {
        countFault('hang');
        stats.hanging++;
        hanging.add(res);
        res.on('close', () => {
          if (hanging.delete(res)) stats.hanging--;
        });
        return;
      }
      if (fault && 'delayMs' in fault) {
        countFault('delay');
        await sleep(fault.delayMs);
      }
      const resetAfter = fault && 'resetAfterTokens' in fault ? fault.resetAfterTokens : undefined;
      if (resetAfter !== undefined) countFault('reset');
      await sleep(script?.ttftMs ?? 0);
      if (resetAfter !== undefined && !chat.stream) {
        res.destroy();
        return;
      }
      const scriptedTokens = script?.replyTokens !== undefined ? loremTokens(script.replyTokens) : undefined;
      const reply = scriptedTokens ? scriptedTokens.join('') : devReply(chat.messages);
      const tokenPause = script?.tokensPerSecond ? 1000 / script.tokensPerSecond : delay;
      const id = `chatcmpl-dev-${randomUUID()}`;
      const created = Math.floor(Date.now() / 1000);
      if (!chat.stream) {
        const promptTokens = chat.messages.reduce((n, m) => n + JSON.stringify(m.content ?? '').split(/\s+/).length, 0);
        const completionTokens = reply.split(/\s+/).length;
        sendJson(res, 200, {
          id,
          object: 'chat.completion',
          created,
          model: DEV_MODEL_ID,
          choices: [{ index: 0, message: { role: 'assistant', content: reply, refusal: null }, logprobs: null, finish_reason: 'stop' }],
          usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
        });
        stats.answered++;
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      let closed = false;
      res.on('close', () => {
        closed = true;
      });
      const chunk = (delta: Record<string, string>, finish: string | null) =>
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: DEV_MODEL_ID, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
      res.write(chunk({ role: 'assistant', content: '' }, null));
      const pieces = scriptedTokens ?? splitForStream(reply);
      // Paced against a start time, so timer slack does not accumulate over a long reply.
      const start = Date.now();
      for (const [i, piece] of pieces.entries()) {
        if (closed) return;
        if (resetAfter !== undefined && i >= resetAfter) {
          await resetAfterFlush(res);
          return;
        }
        // Scripted: the first token goes out at the time to first token, the others at the token
        // rate. Plain dev model: a pause before every chunk, as it always did.
        if (tokenPause > 0 && (i > 0 || !script)) await sleep(start + (script ? i : i + 1) * tokenPause - Date.now());
        if (closed) return;
        res.write(chunk({ content: piece }, null));
      }
      if (closed) return;
      if (resetAfter !== undefined) {
        await resetAfterFlush(res);
        return;
      }
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
      stats.answered++;
      return;
    }
    throw new HttpError(404, `unknown path ${req.method ?? ''} ${path}`, 'invalid_request_error', 'unknown_url');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (err instanceof HttpError) sendError(res, err);
      else {
        logger.error('development model failed', { err });
        sendError(res, new HttpError(500, 'the development model failed', 'server_error', 'internal_error'));
      }
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  const endpoint: LlmEndpoint = { baseUrl: `http://${urlHost}:${port}/v1`, apiKey: DEV_MODEL_API_KEY, model: DEV_MODEL_ID, development: true };
  logger.info('development model is running (replies are labelled, not a real language model)', { baseUrl: endpoint.baseUrl, model: DEV_MODEL_ID });

  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    stats,
    stop: () =>
      (stopping ??= new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      })),
  };
}
