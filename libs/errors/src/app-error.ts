import { Code, codeName } from './code.js';

/** ErrorDetails are structured, client-safe facts about an error (field errors, limits, ids). */
export type ErrorDetails = Record<string, unknown>;

/** AppErrorOptions are the optional parts of an AppError. */
export interface AppErrorOptions {
  /** A stable snake_case reason shown to clients; defaults to the code's name. */
  reason?: string;
  details?: ErrorDetails;
  cause?: unknown;
}

/**
 * AppError is the one error type that crosses layers: a code (gRPC numbering), a client-safe
 * message, a stable reason, structured details, and an internal cause that is logged, never sent.
 */
export class AppError extends Error {
  override readonly name = 'AppError';
  readonly code: Code;
  readonly reason: string;
  readonly details: ErrorDetails;

  constructor(code: Code, message: string, options: AppErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.reason = options.reason ?? codeName(code);
    this.details = options.details ?? {};
  }

  /** invalid reports a client mistake; fields maps a field path to what is wrong with it. */
  static invalid(message: string, fields?: Record<string, string>): AppError {
    return new AppError(Code.InvalidArgument, message, {
      reason: 'invalid_argument',
      details: fields ? { fields } : {},
    });
  }

  /** notFound reports an unknown id, or one the caller does not own (indistinguishable on purpose). */
  static notFound(kind: string, id: string): AppError {
    return new AppError(Code.NotFound, `${kind} ${JSON.stringify(id)} was not found`, {
      reason: 'not_found',
      details: { kind, id },
    });
  }

  /** tooLarge reports a body or field over its size limit (HTTP 413). */
  static tooLarge(message: string, limitBytes: number): AppError {
    return new AppError(Code.InvalidArgument, message, { reason: 'too_large', details: { limit_bytes: limitBytes } });
  }

  /** unauthenticated reports missing or bad credentials. */
  static unauthenticated(message = 'missing or invalid credentials'): AppError {
    return new AppError(Code.Unauthenticated, message, { reason: 'unauthenticated' });
  }

  /** unavailable reports a dependency that cannot be reached right now; retrying may help. */
  static unavailable(message: string, cause?: unknown): AppError {
    return new AppError(Code.Unavailable, message, { reason: 'unavailable', cause });
  }

  /** internal wraps a failure that is our fault; the cause is logged, the client sees a generic text. */
  static internal(cause?: unknown): AppError {
    return new AppError(Code.Internal, 'internal error', { reason: 'internal', cause });
  }
}

/** isAppError narrows unknown to AppError, also across duplicated module copies. */
export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError || (err instanceof Error && err.name === 'AppError' && typeof (err as AppError).code === 'number');
}

/** toAppError normalises anything thrown into an AppError; unknown throws become INTERNAL. */
export function toAppError(err: unknown): AppError {
  if (isAppError(err)) return err;
  return AppError.internal(err);
}
