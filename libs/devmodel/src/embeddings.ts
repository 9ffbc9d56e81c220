/**
 * The development model's `POST /v1/embeddings`: deterministic feature-hashing vectors (word
 * unigrams, L2-normalised), so an OpenAI-compatible embedding client can be exercised end to end
 * without a model. The dimension comes from the model name's trailing number (`dev-embed-64` → 64,
 * 8..4096) or the request's `dimensions`, else 256. Not a semantic model: similar texts are close
 * only by shared words.
 */

/** The default embedding model name of the development model. */
export const DEV_EMBEDDING_MODEL = 'dev-embed-256';

/** EmbeddingScript scripts faults of the embeddings endpoint (a queue consumed one per request). */
export interface EmbeddingScript {
  /** Per request: answer with this HTTP status, or pause this long first; undefined or exhausted: normal. */
  faults?: Array<{ status: number; retryAfterS?: number } | { delayMs: number } | undefined>;
}

/** EmbeddingsError is a client mistake in an embeddings request (answered 400). */
export class EmbeddingsError extends Error {}

function fnv1a(text: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** devEmbed is the development embedding of one text. */
export function devEmbed(text: string, dimensions: number): number[] {
  const v = new Array<number>(dimensions).fill(0);
  for (const w of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
    const sign = fnv1a(w, 0x01000193) & 1 ? 1 : -1;
    v[fnv1a(w, 0x9e3779b1) % dimensions]! += sign;
  }
  const norm = Math.sqrt(v.reduce((n, x) => n + x * x, 0));
  return norm > 0 ? v.map((x) => x / norm) : v;
}

/** embeddingsResponse answers one parsed `/v1/embeddings` request body the way OpenAI does. */
export function embeddingsResponse(raw: string): unknown {
  let body: { model?: unknown; input?: unknown; dimensions?: unknown };
  try {
    body = JSON.parse(raw) as typeof body;
  } catch {
    throw new EmbeddingsError('the request body is not JSON');
  }
  const model = typeof body.model === 'string' && body.model ? body.model : DEV_EMBEDDING_MODEL;
  const inputs = typeof body.input === 'string' ? [body.input] : Array.isArray(body.input) && body.input.every((x) => typeof x === 'string') ? (body.input as string[]) : undefined;
  if (!inputs || inputs.length === 0) throw new EmbeddingsError('input must be a string or a non-empty array of strings');
  if (inputs.length > 2048) throw new EmbeddingsError('input must have at most 2048 items');
  const fromName = Number(/(\d+)$/.exec(model)?.[1] ?? NaN);
  const dimensions = typeof body.dimensions === 'number' ? body.dimensions : Number.isFinite(fromName) && fromName >= 8 && fromName <= 4096 ? fromName : 256;
  if (!Number.isInteger(dimensions) || dimensions < 1 || dimensions > 4096) throw new EmbeddingsError('dimensions must be 1..4096');
  const tokens = inputs.reduce((n, t) => n + (t.match(/\S+/g)?.length ?? 0), 0);
  return {
    object: 'list',
    model,
    data: inputs.map((t, index) => ({ object: 'embedding', index, embedding: devEmbed(t, dimensions) })),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}
