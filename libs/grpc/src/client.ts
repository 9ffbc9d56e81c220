import * as grpc from '@grpc/grpc-js';
import { currentContext } from '@chat/logger';
import { fromGrpcError } from './status.js';

/** Channel options shared by every client: keepalive, and no built-in retries (one layer owns retries). */
const CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.enable_retries': 0,
  // A restarted peer is reached again within a second or two, not after grpc-js' default backoff
  // (1 s doubling to 120 s), which failed every call for tens of seconds after a restart.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 2_000,
  'grpc.max_receive_message_length': 16 * 1024 * 1024,
};

type ClientCtor<C> = new (address: string, credentials: grpc.ChannelCredentials, options?: Partial<grpc.ChannelOptions>) => C;

// Keyed by the generated constructor itself: every ts-proto client class has the same `name`.
const clients = new Map<ClientCtor<grpc.Client>, Map<string, grpc.Client>>();

/** getClient returns one shared client (and so one channel) per generated client type and address. */
export function getClient<C extends grpc.Client>(ctor: ClientCtor<C>, address: string): C {
  let byAddress = clients.get(ctor as ClientCtor<grpc.Client>);
  if (!byAddress) {
    byAddress = new Map();
    clients.set(ctor as ClientCtor<grpc.Client>, byAddress);
  }
  let c = byAddress.get(address);
  if (!c) {
    c = new ctor(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
    byAddress.set(address, c);
  }
  return c as C;
}

/** closeClients closes every shared channel (at process stop). */
export function closeClients(): void {
  for (const byAddress of clients.values()) for (const c of byAddress.values()) c.close();
  clients.clear();
}

/** callMetadata carries the trace id of the current request to the callee, and waits for a restarting peer. */
export function callMetadata(): grpc.Metadata {
  // waitForReady: while a peer restarts, a call waits for the connection (bounded by its
  // deadline) instead of failing at once with UNAVAILABLE.
  const md = new grpc.Metadata({ waitForReady: true });
  const ctx = currentContext();
  if (ctx) md.set('x-trace-id', ctx.traceId);
  return md;
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: grpc.Metadata,
  options: Partial<grpc.CallOptions>,
  callback: (error: grpc.ServiceError | null, response: Res) => void,
) => grpc.ClientUnaryCall;

/** unary calls a unary method with a deadline and maps failures to AppError. */
export function unary<Req, Res>(target: string, method: UnaryMethod<Req, Res>, request: Req, deadlineMs = 10_000): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method(request, callMetadata(), { deadline: Date.now() + deadlineMs }, (err, res) =>
      err ? reject(fromGrpcError(err, target)) : resolve(res),
    );
  });
}

type StreamMethod<Req, Res> = (request: Req, metadata?: grpc.Metadata, options?: Partial<grpc.CallOptions>) => grpc.ClientReadableStream<Res>;

/** serverStream calls a server-streaming method and yields its items; failures become AppError. */
export async function* serverStream<Req, Res>(
  target: string,
  method: StreamMethod<Req, Res>,
  request: Req,
  options: { deadlineMs?: number; signal?: AbortSignal } = {},
): AsyncGenerator<Res> {
  const call = method(request, callMetadata(), options.deadlineMs ? { deadline: Date.now() + options.deadlineMs } : {});
  const onAbort = () => call.cancel();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const item of call as AsyncIterable<Res>) yield item;
  } catch (err) {
    throw fromGrpcError(err, target);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    call.cancel();
  }
}
