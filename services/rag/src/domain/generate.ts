import { AppError } from '@chat/errors';
import type { ChatModels } from './ports.js';
import { buildPrompt, type HistoryTurn } from './prompt.js';
import { summarize, type SummarizeInput } from './summarize.js';
import type { Retriever } from './retrieval.js';
import type { Citation } from './types.js';
import { requireId } from './validate.js';

/** Longest user message, in characters. */
const MAX_MESSAGE_CHARS = 100_000;

/** GenerateInput is everything one grounded reply needs. */
export interface GenerateInput {
  ownerId: string;
  personaId: string;
  systemPrompt: string;
  history: HistoryTurn[];
  /** The rolling summary of the turns before history. */
  summary?: string;
  userMessage: string;
  temperature?: number;
  maxTokens?: number;
  topK?: number;
  scoreThreshold?: number;
}

/** GenerateEvent is one step of a streamed reply. */
export type GenerateEvent = { type: 'delta'; text: string } | { type: 'completed'; content: string; citations: Citation[]; model: string };

/**
 * How long, after a delta went out, the model's further tokens gather into the next one (ms). The
 * first delta goes out at once (time to first token is not delayed); later tokens that arrive
 * within this window travel as one delta, so every hop after rag (gRPC stream, scheduler, bus,
 * session store, gateway, socket) does its per-event work once per window instead of once per
 * token. 0 sends every token as the model streamed it.
 */
export const DEFAULT_DELTA_COALESCE_MS = 20;

/** GenerateDefaults apply when a request leaves a setting unset. */
export interface GenerateDefaults {
  temperature: number;
  maxTokens: number;
}

/** Generator retrieves knowledge, builds the prompt and streams the model's reply. */
export class Generator {
  constructor(
    private readonly deps: { retriever: Retriever; models: ChatModels; defaults: GenerateDefaults; coalesceMs?: number },
  ) {}

  /** summarize folds turns into a rolling summary with the same model and endpoint as the persona's replies. */
  async summarize(input: SummarizeInput, signal?: AbortSignal): Promise<{ summary: string; model: string }> {
    requireId('owner_id', input.ownerId);
    requireId('persona_id', input.personaId);
    const model = await this.deps.models.forPersona(input.ownerId, input.personaId);
    return summarize(model, input, this.deps.defaults, signal);
  }

  async *generate(input: GenerateInput, signal?: AbortSignal): AsyncGenerator<GenerateEvent> {
    requireId('owner_id', input.ownerId);
    requireId('persona_id', input.personaId);
    const userMessage = input.userMessage.trim();
    if (!userMessage) throw AppError.invalid('user_message must not be empty', { user_message: 'must not be empty' });
    if (userMessage.length > MAX_MESSAGE_CHARS) throw AppError.invalid(`user_message must be at most ${MAX_MESSAGE_CHARS} characters`, { user_message: 'is too long' });
    const temperature = input.temperature ?? this.deps.defaults.temperature;
    if (!Number.isFinite(temperature) || temperature < 0 || temperature > 2) throw AppError.invalid('temperature must be between 0 and 2', { temperature: 'must be between 0 and 2' });
    const maxTokens = input.maxTokens && input.maxTokens > 0 ? input.maxTokens : this.deps.defaults.maxTokens;

    // The persona's profile first: an unusable one fails the reply before any work is done.
    const model = await this.deps.models.forPersona(input.ownerId, input.personaId);
    const chunks = await this.deps.retriever.retrieve({
      ownerId: input.ownerId,
      personaId: input.personaId,
      query: userMessage,
      topK: input.topK,
      scoreThreshold: input.scoreThreshold,
      // Mode, rerank and query rewrite follow the persona's settings; rewriting reads the history.
      history: input.history,
      signal,
    });
    const messages = buildPrompt({ systemPrompt: input.systemPrompt, passages: chunks, history: input.history, userMessage, summary: input.summary });

    let content = '';
    const stream = model.stream({ messages, temperature, maxTokens, signal });
    const coalesceMs = this.deps.coalesceMs ?? DEFAULT_DELTA_COALESCE_MS;
    for await (const delta of coalesceMs > 0 ? coalesce(stream, coalesceMs) : stream) {
      if (signal?.aborted) return;
      content += delta;
      yield { type: 'delta', text: delta };
    }
    if (signal?.aborted) return;
    yield {
      type: 'completed',
      content,
      model: model.model,
      // A citation's score is the cosine similarity in every retrieval mode (the ranking scores of hybrid and rerank are on other scales).
      citations: chunks.map((c) => ({ sourceId: c.sourceId, title: c.title, url: c.url, chunkId: c.id, score: c.scores?.dense ?? c.score })),
    };
  }
}

/**
 * coalesce passes the first piece of text on at once, then at most one piece per `windowMs`: what
 * arrived meanwhile, joined. The end of the stream flushes at once; an error of the source is
 * thrown after the text that came before it. Order and content are those of the source.
 */
export async function* coalesce(source: AsyncIterable<string>, windowMs: number): AsyncGenerator<string> {
  const it = source[Symbol.asyncIterator]();
  let pending = '';
  let ended = false;
  let failure: { err: unknown } | undefined;
  let wake: (() => void) | undefined;
  const signal = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const reader = (async () => {
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) break;
        pending += r.value;
        signal();
      }
    } catch (err) {
      failure = { err };
    } finally {
      ended = true;
      signal();
    }
  })();
  let lastSent = -Infinity;
  try {
    for (;;) {
      if (!pending && !ended) await new Promise<void>((resolve) => (wake = resolve));
      // Hold back until the window since the last delta is over, unless the stream ended.
      const due = lastSent + windowMs - performance.now();
      if (pending && !ended && due > 0) {
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          timer = setTimeout(resolve, due);
          // The end of the stream cuts the wait short; more text does not.
          const onSignal = () => {
            if (ended) resolve();
            else wake = onSignal;
          };
          wake = onSignal;
        });
        clearTimeout(timer);
        wake = undefined;
      }
      if (pending) {
        const text = pending;
        pending = '';
        lastSent = performance.now();
        yield text;
        continue;
      }
      if (ended) break;
    }
    await reader;
    if (failure) throw failure.err;
  } finally {
    if (!ended) void Promise.resolve(it.return?.()).catch(() => {});
  }
}
