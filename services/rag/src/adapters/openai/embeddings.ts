import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from 'openai';
import { AppError, Code, isAppError } from '@chat/errors';
import { redactText } from '@chat/logger';
import type { Embedder } from '../../domain/ports.js';

/** OpenAiEmbedderOptions configure one OpenAI-compatible embedding endpoint. */
export interface OpenAiEmbedderOptions {
  baseUrl: string;
  apiKey: string;
  model: string;
  /** The vector size when known (a recorded space); otherwise learnt from the first answer. */
  dimensions?: number;
  /** Texts per request (default 64). */
  batchSize?: number;
  /** Attempts per batch, the first included (default 4). */
  maxAttempts?: number;
  /** First backoff pause; doubled per retry, with jitter, capped at 10 s (default 250 ms). */
  backoffMs?: number;
  /** Timeout of one request (default 60 s). */
  timeoutMs?: number;
}

const clients = new Map<string, OpenAI>();

function clientFor(baseUrl: string, apiKey: string, timeoutMs: number): OpenAI {
  const key = `${baseUrl}\u0000${apiKey}\u0000${timeoutMs}`;
  let c = clients.get(key);
  if (!c) {
    // Retries are ours (per batch, with backoff), so the SDK's own are off: a failure is retried once, not twice over.
    c = new OpenAI({ baseURL: baseUrl, apiKey, maxRetries: 0, timeout: timeoutMs });
    clients.set(key, c);
  }
  return c;
}

/** retryable says whether an embedding failure may pass on a later attempt. */
function retryable(err: unknown): boolean {
  if (err instanceof APIConnectionError || err instanceof APIConnectionTimeoutError) return true;
  if (err instanceof APIError) {
    const s = err.status ?? 0;
    return s === 0 || s === 408 || s === 409 || s === 429 || s >= 500;
  }
  return false;
}

/** mapEmbeddingError turns a client failure into an AppError with a fitting code and no secrets. */
export function mapEmbeddingError(err: unknown): AppError {
  if (isAppError(err)) return err;
  if (err instanceof APIConnectionTimeoutError) return new AppError(Code.DeadlineExceeded, 'the embedding model did not answer in time', { reason: 'embedding_timeout', cause: err });
  if (err instanceof APIConnectionError) return new AppError(Code.Unavailable, 'the embedding model could not be reached', { reason: 'embedding_unavailable', cause: err });
  if (err instanceof APIError) {
    const status = err.status ?? 0;
    const raw = (err.error as { message?: unknown } | undefined)?.message;
    const said = typeof raw === 'string' ? redactText(raw.replace(/\s+/g, ' ')).slice(0, 200) : '';
    const suffix = said ? `: ${said}` : '';
    const details = { upstream_status: status };
    if (status === 429) return new AppError(Code.ResourceExhausted, `the embedding model is rate limited (429)${suffix}`, { reason: 'embedding_rate_limited', details, cause: err });
    if (status >= 500 || status === 0) return new AppError(Code.Unavailable, `the embedding model failed (${status || 'no status'})${suffix}`, { reason: 'embedding_unavailable', details, cause: err });
    if (status === 401 || status === 403) return new AppError(Code.FailedPrecondition, `the embedding model rejected the credentials (${status})`, { reason: 'embedding_auth_failed', details, cause: err });
    return new AppError(Code.FailedPrecondition, `the embedding model rejected the request (${status})${suffix}`, { reason: 'embedding_rejected', details, cause: err });
  }
  return new AppError(Code.Unavailable, 'the embedding model failed', { reason: 'embedding_unavailable', cause: err });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * OpenAiEmbedder embeds through an OpenAI-compatible `/v1/embeddings` endpoint: texts go in
 * batches, each batch is retried with exponential backoff on rate limits, server errors and
 * connection failures, and every answer is checked (one vector per text, all of one size).
 */
export class OpenAiEmbedder implements Embedder {
  readonly local = false;
  private dims: number | undefined;
  /** Requests sent (for tests and diagnostics). */
  requests = 0;

  constructor(private readonly options: OpenAiEmbedderOptions) {
    if (!options.model.trim()) throw AppError.invalid('the embedding model name is empty');
    this.dims = options.dimensions;
  }

  get name(): string {
    return this.options.model;
  }

  /** The vector size; 0 until known (call probe() for a fresh endpoint). */
  get dimensions(): number {
    return this.dims ?? 0;
  }

  /** probe embeds one short text to learn the endpoint's vector size. */
  async probe(): Promise<number> {
    if (this.dims === undefined) await this.embed(['dimension probe']);
    return this.dims!;
  }

  async embed(texts: readonly string[]): Promise<number[][]> {
    const batch = Math.max(1, this.options.batchSize ?? 64);
    const out: number[][] = [];
    for (let i = 0; i < texts.length; i += batch) out.push(...(await this.embedBatch(texts.slice(i, i + batch))));
    return out;
  }

  private async embedBatch(texts: readonly string[]): Promise<number[][]> {
    const { baseUrl, apiKey, model } = this.options;
    const client = clientFor(baseUrl, apiKey || 'none', this.options.timeoutMs ?? 60_000);
    const attempts = Math.max(1, this.options.maxAttempts ?? 4);
    const backoff = this.options.backoffMs ?? 250;
    // An empty input is refused by some servers; it embeds as a single space.
    const input = texts.map((t) => (t.trim() ? t : ' '));
    for (let attempt = 1; ; attempt++) {
      try {
        this.requests++;
        const res = await client.embeddings.create({ model, input, encoding_format: 'float' });
        const data = [...res.data].sort((a, b) => a.index - b.index);
        if (data.length !== input.length) throw new AppError(Code.Unavailable, `the embedding model returned ${data.length} vectors for ${input.length} texts`, { reason: 'embedding_invalid' });
        const vectors = data.map((d) => d.embedding as number[]);
        const size = vectors[0]?.length ?? 0;
        if (size === 0 || vectors.some((v) => v.length !== size || !v.every(Number.isFinite))) {
          throw new AppError(Code.Unavailable, 'the embedding model returned malformed vectors', { reason: 'embedding_invalid' });
        }
        if (this.dims === undefined) this.dims = size;
        else if (size !== this.dims) {
          throw new AppError(Code.FailedPrecondition, `the embedding model returned ${size}-dimensional vectors; this knowledge was embedded with ${this.dims} dimensions (re-embed it)`, {
            reason: 'embedding_dimension_changed',
          });
        }
        return vectors;
      } catch (err) {
        if (attempt >= attempts || !retryable(err)) throw mapEmbeddingError(err);
        const retryAfter = err instanceof APIError ? Number(err.headers?.get?.('retry-after')) : NaN;
        const pause = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 10_000) : Math.min(backoff * 2 ** (attempt - 1), 10_000) * (0.5 + Math.random() / 2);
        await sleep(pause);
      }
    }
  }
}
