import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { AppError, Code, isAppError } from '@chat/errors';
import { redactText } from '@chat/logger';
import type { LlmEndpoint } from '@chat/devmodel';
import type { ChatModel, ChatRequest } from '../../domain/ports.js';

const clients = new Map<string, OpenAI>();

/** clientFor returns one shared client per base URL and key (and timeout). */
export function clientFor(endpoint: Pick<LlmEndpoint, 'baseUrl' | 'apiKey'>, timeoutMs: number): OpenAI {
  const key = `${endpoint.baseUrl}\u0000${endpoint.apiKey}\u0000${timeoutMs}`;
  let c = clients.get(key);
  if (!c) {
    c = new OpenAI({ baseURL: endpoint.baseUrl, apiKey: endpoint.apiKey, maxRetries: 0, timeout: timeoutMs });
    clients.set(key, c);
  }
  return c;
}

/** upstreamMessage is a short, secret-free summary of what the model API said. */
function upstreamMessage(err: APIError): string {
  const raw = (err.error as { message?: unknown } | undefined)?.message;
  const text = typeof raw === 'string' ? raw : '';
  return redactText(text.replace(/\s+/g, ' ')).slice(0, 200);
}

/**
 * retryAfterMs reads the upstream's `retry-after-ms` or `Retry-After` (seconds or an HTTP date)
 * header as ms. The scheduler (the one retry layer, decision 0009) waits at least that long
 * before its next attempt; the client itself never retries (maxRetries: 0).
 */
export function retryAfterMs(headers: { get(name: string): string | null } | undefined, now = Date.now()): number | undefined {
  const ms = headers?.get('retry-after-ms')?.trim();
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.round(Number(ms));
  const v = headers?.get('retry-after')?.trim();
  if (!v) return undefined;
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/**
 * mapLlmError turns an OpenAI client failure into an AppError with a fitting code and no secrets.
 * The code decides whether the scheduler retries (decision 0009): UNAVAILABLE (5xx, connection
 * failures and resets), RESOURCE_EXHAUSTED (429, with `retry_after_ms` from Retry-After) and
 * DEADLINE_EXCEEDED (timeouts) are retried; FAILED_PRECONDITION (other 4xx) and CANCELLED are not.
 */
export function mapLlmError(err: unknown): AppError {
  if (isAppError(err)) return err;
  if (err instanceof APIUserAbortError) return new AppError(Code.Cancelled, 'the language model request was cancelled', { reason: 'cancelled', cause: err });
  if (err instanceof APIConnectionTimeoutError) return new AppError(Code.DeadlineExceeded, 'the language model did not answer in time', { reason: 'llm_timeout', cause: err });
  if (err instanceof APIConnectionError) return new AppError(Code.Unavailable, 'the language model could not be reached', { reason: 'llm_unavailable', cause: err });
  if (err instanceof APIError) {
    const status = err.status ?? 0;
    const said = upstreamMessage(err);
    const suffix = said ? `: ${said}` : '';
    const after = status === 429 || status >= 500 ? retryAfterMs(err.headers) : undefined;
    const details: Record<string, unknown> = { upstream_status: status, ...(after === undefined ? {} : { retry_after_ms: after }) };
    if (status === 429) return new AppError(Code.ResourceExhausted, `the language model is rate limited (429)${suffix}`, { reason: 'llm_rate_limited', details, cause: err });
    if (status === 408 || status === 504) return new AppError(Code.DeadlineExceeded, `the language model did not answer in time (${status})`, { reason: 'llm_timeout', details, cause: err });
    if (status >= 500 || status === 0) return new AppError(Code.Unavailable, `the language model failed (${status || 'no status'})${suffix}`, { reason: 'llm_unavailable', details, cause: err });
    if (status === 401 || status === 403)
      return new AppError(Code.FailedPrecondition, `the language model rejected the credentials (${status})`, { reason: 'llm_auth_failed', details, cause: err });
    return new AppError(Code.FailedPrecondition, `the language model rejected the request (${status})${suffix}`, { reason: 'llm_rejected', details, cause: err });
  }
  if (err instanceof Error && err.name === 'AbortError') return new AppError(Code.Cancelled, 'the language model request was cancelled', { reason: 'cancelled', cause: err });
  return new AppError(Code.Unavailable, 'the language model failed', { reason: 'llm_unavailable', cause: err });
}

/** OpenAiChatModel streams chat completions from an OpenAI-compatible endpoint. */
export class OpenAiChatModel implements ChatModel {
  constructor(
    private readonly endpoint: LlmEndpoint,
    private readonly options: { timeoutMs: number },
  ) {}

  get model(): string {
    return this.endpoint.model;
  }

  async *stream(request: ChatRequest): AsyncIterable<string> {
    const client = clientFor(this.endpoint, this.options.timeoutMs);
    try {
      const stream = await client.chat.completions.create(
        {
          model: this.endpoint.model,
          messages: request.messages,
          ...(request.temperature === undefined ? {} : { temperature: request.temperature }),
          ...(request.maxTokens === undefined ? {} : { max_tokens: request.maxTokens }),
          stream: true,
        },
        { signal: request.signal },
      );
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta?.content;
        if (delta) yield delta;
      }
      // The client ends an aborted stream quietly; a cut-off reply must not look complete.
      if (request.signal?.aborted) throw new AppError(Code.Cancelled, 'the language model request was cancelled', { reason: 'cancelled' });
    } catch (err) {
      throw mapLlmError(err);
    }
  }
}
