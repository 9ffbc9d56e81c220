import type { IncomingMessage, Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { AppError, Code, errorBody, httpStatus, toAppError } from '@chat/errors';
import { newTraceId, withContext, type Logger } from '@chat/logger';
import { WebSocketServer, type RawData } from 'ws';
import type { WsTokens } from '../auth.js';
import type { GatewayLimits } from '../limits.js';
import type { SchedulerApi, SessionApi } from '../deps.js';
import { parseClientFrame, type ClientFrame } from './frames.js';
import type { Client, SocketHub } from './hub.js';

/** The largest client frame; bigger ones close the socket with 1009. */
export const MAX_FRAME_BYTES = 64 * 1024;

const ROUTE = '/ws/sessions/:id';

export interface WsDeps {
  session: SessionApi;
  scheduler: SchedulerApi;
  tokens: WsTokens;
  hub: SocketHub;
  logger: Logger;
  /** False while the gateway is shutting down: new upgrades are refused with 503. */
  accepting: () => boolean;
  /** Per-session frame rate limit and the per-owner stream cap. */
  limits?: GatewayLimits;
  /** Origins allowed to connect (lower case, `*` = any); unset = any. A request without Origin is allowed. */
  allowedOrigins?: readonly string[];
}

/**
 * attachWebSocket serves `/ws/sessions/:id?ws_token=…` on the http server's `upgrade` event. Every
 * refusal (unknown path, missing, expired, reused, forged or other-session token) is a plain HTTP
 * response written before any upgrade. Tokens are never logged.
 */
export function attachWebSocket(server: Server, deps: WsDeps): WebSocketServer {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  const { logger } = deps;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    void upgrade(req, socket, head).catch((err: unknown) => {
      logger.error('websocket upgrade failed', { err });
      refuse(socket, AppError.internal(err));
    });
  });

  const upgrade = async (req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> => {
    const started = performance.now();
    const requestId = randomUUID();
    socket.on('error', () => {});
    const access = (status: number, route: string) =>
      logger.info('request', { method: req.method, route, status, duration_ms: Math.round((performance.now() - started) * 100) / 100, request_id: requestId, upgrade: true });

    const url = new URL(req.url ?? '/', 'http://gateway.invalid');
    const m = /^\/ws\/sessions\/([^/]+)$/.exec(url.pathname);
    let session: string | undefined;
    try {
      session = m ? decodeURIComponent(m[1]!) : undefined;
    } catch {
      session = undefined;
    }
    if (!session || session.length > 100 || req.method !== 'GET') {
      access(404, 'unmatched');
      return refuse(socket, AppError.notFound('route', url.pathname));
    }
    if (!deps.accepting()) {
      access(503, ROUTE);
      return refuse(socket, AppError.unavailable('the gateway is shutting down'));
    }
    // A browser page of another site must not use a token it got hold of (checked before the token is spent).
    const origin = req.headers.origin;
    if (origin !== undefined && deps.allowedOrigins && !deps.allowedOrigins.includes('*') && !deps.allowedOrigins.includes(origin.toLowerCase())) {
      logger.info('websocket refused', { request_id: requestId, problem: 'origin_not_allowed' });
      access(403, ROUTE);
      return refuse(socket, new AppError(Code.PermissionDenied, 'this Origin may not open WebSockets (see WS_ALLOWED_ORIGINS)', { reason: 'origin_not_allowed' }));
    }
    const checked = await deps.tokens.verify(url.searchParams.get('ws_token'), session);
    if (!checked.ok) {
      logger.info('websocket refused', { request_id: requestId, problem: checked.problem });
      if (checked.problem === 'unavailable') {
        access(503, ROUTE);
        return refuse(socket, AppError.unavailable('cannot check the ws_token right now; get a new one and retry'));
      }
      access(401, ROUTE);
      return refuse(socket, AppError.unauthenticated(checked.problem === 'missing' ? 'missing ws_token' : 'invalid, expired or already used ws_token'));
    }
    const lastSeqParam = url.searchParams.get('last_seq');
    const resumeFrom = lastSeqParam === null ? undefined : /^\d{1,15}$/.test(lastSeqParam) ? Number(lastSeqParam) : NaN;
    if (Number.isNaN(resumeFrom)) {
      access(400, ROUTE);
      return refuse(socket, AppError.invalid('last_seq must be a whole number >= 0', { last_seq: 'must be a whole number >= 0' }));
    }
    const { owner } = checked.claims;
    const sessionId = session;
    // The per-owner stream cap: refused before upgrading, released when the socket closes.
    if (deps.limits) {
      let release: () => void;
      try {
        release = deps.limits.streams.acquire(owner);
      } catch (err) {
        access(429, ROUTE);
        return refuse(socket, err as AppError);
      }
      socket.once('close', release);
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      access(101, ROUTE);
      const client: Client = { ws, owner, session: sessionId, alive: true };
      deps.hub.add(client);
      // `last_seq` in the URL resumes atomically with the upgrade (no live frame can come first).
      if (resumeFrom !== undefined) void deps.hub.resume(client, resumeFrom, deps.session);
      ws.on('pong', () => {
        client.alive = true;
      });
      ws.on('message', (data: RawData, isBinary: boolean) => {
        void withContext({ traceId: newTraceId(), requestId }, () => onFrame(deps, client, data, isBinary));
      });
      ws.on('close', () => deps.hub.remove(client));
      ws.on('error', (err) => {
        logger.debug('websocket error', { session: sessionId, err: err.message });
      });
    });
  };
  return wss;
}

/** refuse answers an upgrade request with a plain HTTP error and closes the connection. */
function refuse(socket: Duplex, err: AppError): void {
  const status = httpStatus(err);
  const body = JSON.stringify(errorBody(err));
  const retryAfter = (err.details as { retry_after_seconds?: unknown } | undefined)?.retry_after_seconds;
  const extra = status === 429 && typeof retryAfter === 'number' ? `Retry-After: ${retryAfter}\r\n` : '';
  if (socket.destroyed) return;
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nConnection: close\r\n${extra}Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

function errorFrame(err: AppError) {
  return { type: 'error', error: errorBody(err).error };
}

async function onFrame(deps: WsDeps, client: Client, data: RawData, isBinary: boolean): Promise<void> {
  if (isBinary) return deps.hub.send(client, errorFrame(AppError.invalid('binary frames are not supported; send JSON text')));
  const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data as ArrayBuffer).toString('utf8');
  const parsed = parseClientFrame(text);
  if (!parsed.ok) return deps.hub.send(client, errorFrame(AppError.invalid(parsed.message, parsed.fields)));
  try {
    // Every frame counts against the session's rate limit (a refused frame answers rate_limited).
    deps.limits?.session(client.owner, client.session);
    await handle(deps, client, parsed.frame);
  } catch (err) {
    const appErr = toAppError(err);
    if (httpStatus(appErr) >= 500) deps.logger.error('websocket frame failed', { type: parsed.frame.type, session: client.session, err });
    deps.hub.send(client, { ...errorFrame(appErr), ...('client_id' in parsed.frame && parsed.frame.client_id ? { client_id: parsed.frame.client_id } : {}) });
  }
}

async function handle(deps: WsDeps, client: Client, frame: ClientFrame): Promise<void> {
  switch (frame.type) {
    case 'ping':
      return deps.hub.send(client, { type: 'pong' });
    case 'message': {
      const res = await deps.session.sendMessage({ ownerId: client.owner, sessionId: client.session, content: frame.content });
      return deps.hub.send(client, {
        type: 'message.accepted',
        message_id: res.messageId,
        reply_id: res.replyId,
        ...(frame.client_id !== undefined ? { client_id: frame.client_id } : {}),
      });
    }
    case 'cancel':
      await deps.scheduler.cancelReply({ ownerId: client.owner, sessionId: client.session, replyId: frame.reply_id });
      return;
    case 'resume':
      // Everything after last_seq, in order: from this gateway's buffer, else the durable store.
      return deps.hub.resume(client, frame.last_seq, deps.session);
  }
}
