import { AppError, Code } from '@chat/errors';
import type { Reranker } from '../../domain/ports.js';

/** HttpRerankerOptions configure a `/rerank` endpoint (Cohere, Jina, Infinity, vLLM and TEI-compatible servers). */
export interface HttpRerankerOptions {
  /** The full URL of the rerank endpoint, e.g. http://127.0.0.1:7997/rerank or https://api.cohere.com/v2/rerank. */
  url: string;
  model: string;
  /** Sent as a bearer token when set; never logged. */
  apiKey?: string;
  timeoutMs?: number;
}

interface RerankAnswer {
  results?: Array<{ index?: unknown; relevance_score?: unknown; score?: unknown }>;
}

/**
 * HttpReranker scores candidates with a cross-encoder behind a `/rerank` endpoint:
 * `POST {model, query, documents, top_n}` → `{results: [{index, relevance_score}]}` (the Cohere
 * shape, also spoken by Jina, Infinity and vLLM). Texts the answer leaves out score 0. Failures are
 * AppErrors (the retriever then keeps the fused order).
 */
export class HttpReranker implements Reranker {
  readonly local = false;

  constructor(private readonly options: HttpRerankerOptions) {}

  get name(): string {
    return this.options.model;
  }

  async score(query: string, texts: readonly string[]): Promise<number[]> {
    if (texts.length === 0) return [];
    let res: Response;
    try {
      res = await fetch(this.options.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}) },
        body: JSON.stringify({ model: this.options.model, query, documents: texts, top_n: texts.length }),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (err) {
      throw new AppError(Code.Unavailable, 'the reranker could not be reached', { reason: 'rerank_unavailable', cause: err });
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new AppError(res.status >= 500 || res.status === 429 ? Code.Unavailable : Code.FailedPrecondition, `the reranker answered ${res.status}`, {
        reason: 'rerank_failed',
        details: { upstream_status: res.status },
      });
    }
    const body = (await res.json().catch(() => undefined)) as RerankAnswer | undefined;
    if (!body || !Array.isArray(body.results)) throw new AppError(Code.Unavailable, 'the reranker answered without results', { reason: 'rerank_invalid' });
    const scores = texts.map(() => 0);
    for (const r of body.results) {
      const i = Number(r.index);
      const s = Number(r.relevance_score ?? r.score);
      if (Number.isInteger(i) && i >= 0 && i < texts.length && Number.isFinite(s)) scores[i] = s;
    }
    return scores;
  }
}
