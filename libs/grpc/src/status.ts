import { Metadata, status as GrpcStatus, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import { AppError, Code, isAppError, toAppError } from '@chat/errors';

const REASON_KEY = 'x-error-reason';
const DETAILS_KEY = 'x-error-details';

/** toGrpcStatus renders an error as a gRPC status; internal causes stay on this side. */
export function toGrpcStatus(err: unknown): Partial<StatusObject> {
  const app = toAppError(err);
  const metadata = new Metadata();
  const internal = app.code === Code.Internal || app.code === Code.Unknown;
  metadata.set(REASON_KEY, internal ? 'internal' : app.reason);
  if (!internal && Object.keys(app.details).length > 0) metadata.set(DETAILS_KEY, JSON.stringify(app.details));
  return { code: app.code as number as GrpcStatus, details: internal ? 'internal error' : app.message, metadata };
}

/** fromGrpcError turns a client-side gRPC error back into the AppError the server raised. */
export function fromGrpcError(err: unknown, target: string): AppError {
  if (isAppError(err)) return err;
  const e = err as Partial<ServiceError>;
  if (typeof e.code !== 'number') return AppError.internal(err);
  const code = e.code as number as Code;
  const reason = e.metadata?.get(REASON_KEY)[0]?.toString();
  let details: Record<string, unknown> = {};
  const raw = e.metadata?.get(DETAILS_KEY)[0]?.toString();
  if (raw) {
    try {
      details = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      details = {};
    }
  }
  if (code === Code.Unavailable && !reason) return AppError.unavailable(`${target} is unavailable`, err);
  // Calls wait for a restarting peer (waitForReady); one that never got a connection before its
  // deadline found the peer unavailable, not slow (grpc-js says it was still waiting for a pick).
  if (code === Code.DeadlineExceeded && !reason && /Waiting for LB pick/.test(e.details ?? ''))
    return AppError.unavailable(`${target} is unavailable`, err);
  if (code === Code.DeadlineExceeded && !reason)
    return new AppError(Code.DeadlineExceeded, `${target} did not answer in time`, { reason: 'deadline_exceeded', cause: err });
  return new AppError(code, e.details || e.message || 'error', { reason, details, cause: err });
}
