import { AppError, Code, codeFromHttpStatus, isAppError } from '@chat/errors';

interface AjvError {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

interface FastifyishError extends Error {
  code?: string;
  statusCode?: number;
  validation?: AjvError[];
  validationContext?: string;
}

const PART: Record<string, string> = { body: 'body', params: 'path', querystring: 'query', headers: 'header' };

/** fieldErrors turns ajv errors into `{ "field.path": "what is wrong" }`. */
export function fieldErrors(errors: readonly AjvError[], context = 'body'): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const e of errors) {
    const segments = (e.instancePath ?? '').split('/').filter(Boolean);
    let message = e.message ?? 'is invalid';
    if (e.keyword === 'required' && typeof e.params?.missingProperty === 'string') {
      segments.push(e.params.missingProperty);
      message = 'is required';
    } else if (e.keyword === 'additionalProperties' && typeof e.params?.additionalProperty === 'string') {
      segments.push(e.params.additionalProperty);
      message = 'is not a known field';
    }
    const path = segments.join('.') || (context === 'body' ? '(body)' : `(${PART[context] ?? context})`);
    fields[path] ??= message;
  }
  return fields;
}

/**
 * toHttpAppError turns anything a request may throw (validation, body parsing, services, bugs)
 * into an AppError; httpStatus/errorBody of @chat/errors then render it.
 */
export function toHttpAppError(err: unknown, maxBodyBytes = 0): AppError {
  if (isAppError(err)) return err;
  const e = err as FastifyishError;
  if (e && Array.isArray(e.validation)) {
    const context = e.validationContext ?? 'body';
    const fields = fieldErrors(e.validation, context);
    return AppError.invalid(`invalid request ${PART[context] ?? context}: ${Object.entries(fields).map(([k, v]) => `${k} ${v}`).join('; ')}`, fields);
  }
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return AppError.tooLarge(`request body is larger than ${maxBodyBytes} bytes`, maxBodyBytes);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError(Code.InvalidArgument, 'unsupported content type: send application/json', { reason: 'unsupported_media_type' });
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return AppError.invalid('request body is not valid JSON', { '(body)': 'is not valid JSON' });
  }
  if (e instanceof SyntaxError) return AppError.invalid('request body is not valid JSON', { '(body)': 'is not valid JSON' });
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    // A client error raised by fastify itself; its messages carry no secrets.
    const code = codeFromHttpStatus(status);
    return new AppError(code === Code.Unknown ? Code.InvalidArgument : code, e.message || 'bad request', { reason: status === 413 ? 'too_large' : undefined });
  }
  return AppError.internal(err);
}
