import { AppError, Code, errorBody, httpStatus } from '@chat/errors';

/** OpenAI's error `type` for an HTTP status. */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'invalid_request_error';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

/**
 * openaiErrorBody renders an AppError in OpenAI's shape, `{"error":{"message","type","param","code"}}`,
 * so OpenAI client libraries raise their usual typed errors; `code` is our snake_case code (the
 * same as API.md's), `param` the first invalid field, and `details` is kept as an extra member.
 */
export function openaiErrorBody(err: AppError): { error: { message: string; type: string; param: string | null; code: string; details: Record<string, unknown> } } {
  const body = errorBody(err).error;
  const details = (body.details ?? {}) as Record<string, unknown>;
  const fields = details.fields && typeof details.fields === 'object' ? Object.keys(details.fields as object) : Object.keys(details);
  const param = err.code === Code.InvalidArgument && fields.length > 0 && fields[0] !== 'limit_bytes' ? fields[0]! : null;
  return { error: { message: body.message, type: errorType(httpStatus(err)), param, code: body.code, details } };
}

/** modelNotFound is the 404 for a `model` that names none of the caller's personas. */
export function modelNotFound(model: string): AppError {
  return new AppError(Code.NotFound, `The model '${model}' does not exist: use the id (or the unique name) of one of your personas; GET /v1/models lists them`, {
    reason: 'model_not_found',
    details: { model },
  });
}
