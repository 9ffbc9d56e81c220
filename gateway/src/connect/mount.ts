import { createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse, type Http2Session } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { FastifyInstance } from 'fastify';
import { AppError, errorBody } from '@chat/errors';
import { apiV1 } from '@chat/contracts/es';
import type { GatewayDeps } from '../deps.js';
import type { SocketHub } from '../ws/hub.js';
import { chatService } from './service.js';

/** Where Connect procedures live: `/<package>.<Service>/<Method>`. */
const PREFIX = `/${apiV1.ChatService.typeName}/`;
/** How long a new connection may stay silent before it is closed. */
const SNIFF_TIMEOUT_MS = 30_000;
/** The client preface that opens every HTTP/2 connection without TLS (h2c with prior knowledge). */
const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

/**
 * attachConnect serves chat.api.v1.ChatService on the gateway's own HTTP port (one port, as
 * ARCHITECTURE.md asks): Connect (JSON and binary) and gRPC-Web over HTTP/1.1 next to REST and
 * WebSocket, and gRPC over cleartext HTTP/2 (h2c, prior knowledge, as gRPC clients speak it without
 * TLS). A new connection is told apart by its first bytes: the HTTP/2 preface goes to an HTTP/2
 * server, anything else to the HTTP/1.1 server fastify runs. Requests under `/chat.api.v1.ChatService/`
 * go to the Connect handler; all others to fastify. docs/decisions/0017.
 */
export function attachConnect(app: FastifyInstance, deps: GatewayDeps, hub: SocketHub, accepting: () => boolean): void {
  const chat = chatService(deps, hub);
  const handler = connectNodeAdapter({
    routes: (router) => router.service(apiV1.ChatService, chat.impl),
    grpc: true,
    grpcWeb: true,
    connect: true,
    // Request bodies are bounded like REST bodies.
    readMaxBytes: deps.maxBodyBytes ?? 1024 * 1024,
  });
  const serve = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => {
    if (!accepting()) {
      const err = AppError.unavailable('the gateway is shutting down');
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify(errorBody(err)));
      return;
    }
    void handler(req as IncomingMessage, res as ServerResponse);
  };

  // HTTP/1.1: Connect paths to the Connect handler, the rest to fastify.
  const server = app.server;
  const fastifyListeners = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.url?.startsWith(PREFIX)) return serve(req, res);
    for (const l of fastifyListeners) l.call(server, req, res);
  });

  // HTTP/2 cleartext: only Connect procedures (REST and WebSocket stay on HTTP/1.1).
  const h2 = createH2Server({}, (req, res) => {
    if (req.url.startsWith(PREFIX)) return serve(req, res);
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify(errorBody(AppError.notFound('route', req.url.split('?')[0] ?? '/'))));
  });
  const h2Sessions = new Set<Http2Session>();
  h2.on('session', (s: Http2Session) => {
    h2Sessions.add(s);
    s.once('close', () => h2Sessions.delete(s));
  });
  const connectionListeners = server.listeners('connection') as Array<(socket: Socket) => void>;
  server.removeAllListeners('connection');
  // Connections that have not sent their first bytes yet (fastify does not know them yet).
  const sniffing = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sniffing.add(socket);
    // A connection that never speaks is dropped, as the HTTP server's own timeouts would.
    const silent = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    socket.once('close', () => {
      clearTimeout(silent);
      sniffing.delete(socket);
    });
    socket.once('readable', () => {
      clearTimeout(silent);
      sniffing.delete(socket);
      const head = socket.read() as Buffer | null;
      if (head) socket.unshift(head);
      const isH2 = head !== null && head.length >= 3 && head.subarray(0, Math.min(head.length, H2_PREFACE.length)).equals(H2_PREFACE.subarray(0, Math.min(head.length, H2_PREFACE.length)));
      if (isH2) {
        // The HTTP/2 session reads what is already buffered on the socket (the preface) itself.
        h2.emit('connection', socket);
      } else {
        for (const l of connectionListeners) l.call(server, socket);
        socket.resume();
      }
    });
  });

  // Shutdown: end open reply streams (clients resume elsewhere) and the HTTP/2 sessions, so the
  // server can close.
  app.addHook('preClose', (done) => {
    chat.closeStreams();
    for (const socket of sniffing) socket.destroy();
    for (const s of h2Sessions) {
      s.close();
      setTimeout(() => s.destroy(), 1_000).unref();
    }
    done();
  });
}
