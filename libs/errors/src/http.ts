import { AppError, type ErrorDetails } from './app-error.js';
import { Code, codeName } from './code.js';

/** The one table from error code to HTTP status. */
const httpStatusByCode: Record<Code, number> = {
  [Code.Cancelled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 422,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** Reasons whose HTTP status is more precise than their code's. */
const httpStatusByReason: Record<string, number> = {
  too_large: 413,
  unsupported_media_type: 415,
};

/** httpStatus is the HTTP status for an error. */
export function httpStatus(err: AppError): number {
  return httpStatusByReason[err.reason] ?? httpStatusByCode[err.code] ?? 500;
}

/** ErrorBody is the JSON error body of every public endpoint. */
export interface ErrorBody {
  error: { code: string; message: string; details: ErrorDetails };
}

/** errorBody renders an error for clients: internal errors never reveal their cause. */
export function errorBody(err: AppError): ErrorBody {
  const internal = err.code === Code.Internal || err.code === Code.Unknown || err.code === Code.DataLoss;
  return {
    error: {
      code: internal ? codeName(Code.Internal) : err.reason,
      message: internal ? 'internal error' : err.message,
      details: internal ? {} : err.details,
    },
  };
}

/** fromHttpStatus maps an HTTP status (e.g. of an upstream API) to the closest code. */
export function codeFromHttpStatus(status: number): Code {
  if (status === 400 || status === 413 || status === 422) return Code.InvalidArgument;
  if (status === 401) return Code.Unauthenticated;
  if (status === 403) return Code.PermissionDenied;
  if (status === 404) return Code.NotFound;
  if (status === 409) return Code.Aborted;
  if (status === 429) return Code.ResourceExhausted;
  if (status === 499) return Code.Cancelled;
  if (status === 501) return Code.Unimplemented;
  if (status === 503 || status === 502) return Code.Unavailable;
  if (status === 504) return Code.DeadlineExceeded;
  return status >= 500 ? Code.Internal : Code.Unknown;
}
