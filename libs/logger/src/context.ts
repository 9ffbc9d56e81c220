import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';

/** RequestContext is what follows one request across async calls, gRPC hops and events. */
export interface RequestContext {
  traceId: string;
  requestId?: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** newTraceId makes a W3C-style 16-byte hex trace id. */
export function newTraceId(): string {
  return randomBytes(16).toString('hex');
}

/** withContext runs fn with ctx as the current request context. */
export function withContext<T>(ctx: RequestContext, fn: () => T): T {
  return storage.run(ctx, fn);
}

/** currentContext is the request context of the running async call chain, if any. */
export function currentContext(): RequestContext | undefined {
  return storage.getStore();
}
