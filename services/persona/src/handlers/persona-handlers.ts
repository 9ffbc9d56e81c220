import { AppError } from '@chat/errors';
import { personaV1 } from '@chat/contracts';
import { isUuid, validateNewPersona, type Persona, type PersonaSettings } from '../domain/persona.js';
import type { PersonaRepository } from '../adapters/postgres/persona-repo.js';

const MODE_TO_PROTO = { dense: personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE, hybrid: personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID } as const;

/** toProto renders a persona for gRPC. */
export function toProto(p: Persona): personaV1.Persona {
  const r = p.settings.retrieval;
  return personaV1.Persona.fromPartial({
    id: p.id,
    ownerId: p.ownerId,
    name: p.name,
    systemPrompt: p.systemPrompt,
    background: p.background,
    apiProfileId: p.apiProfileId ?? undefined,
    settings: {
      temperature: p.settings.temperature,
      maxTokens: p.settings.max_tokens,
      historyBudgetTokens: p.settings.history_budget_tokens,
      retrieval: r
        ? { topK: r.top_k, scoreThreshold: r.score_threshold, mode: r.mode ? MODE_TO_PROTO[r.mode] : undefined, rerank: r.rerank, queryRewrite: r.query_rewrite }
        : undefined,
    },
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
  });
}

function fromProtoSettings(s: personaV1.PersonaSettings | undefined): PersonaSettings {
  if (!s) return {};
  const out: PersonaSettings = {};
  if (s.temperature !== undefined) out.temperature = s.temperature;
  if (s.maxTokens !== undefined) out.max_tokens = s.maxTokens;
  if (s.historyBudgetTokens !== undefined) out.history_budget_tokens = s.historyBudgetTokens;
  if (s.retrieval) {
    const r = s.retrieval;
    out.retrieval = {};
    if (r.topK !== undefined) out.retrieval.top_k = r.topK;
    if (r.scoreThreshold !== undefined) out.retrieval.score_threshold = r.scoreThreshold;
    if (r.mode === personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE) out.retrieval.mode = 'dense';
    if (r.mode === personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID) out.retrieval.mode = 'hybrid';
    if (r.rerank !== undefined) out.retrieval.rerank = r.rerank;
    if (r.queryRewrite !== undefined) out.retrieval.query_rewrite = r.queryRewrite;
  }
  return out;
}

/** Page tokens are opaque to clients: base64url of the last row's (created_at, id). */
function encodeCursor(c: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify([c.createdAt.toISOString(), c.id])).toString('base64url');
}
function decodeCursor(token: string): { createdAt: Date; id: string } {
  try {
    const [at, id] = JSON.parse(Buffer.from(token, 'base64url').toString()) as [string, string];
    const createdAt = new Date(at);
    if (Number.isNaN(createdAt.getTime()) || !isUuid(id)) throw new Error('bad cursor');
    return { createdAt, id };
  } catch {
    throw AppError.invalid('page_token is not valid', { page_token: 'is not a token this service issued' });
  }
}

/** personaHandlers translates gRPC calls to the repository. */
export function personaHandlers(repo: PersonaRepository) {
  const load = async (ownerId: string, id: string) => {
    if (!ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
    const p = isUuid(id) ? await repo.get(ownerId, id) : undefined;
    if (!p) throw AppError.notFound('persona', id);
    return p;
  };
  return {
    async createPersona(req: personaV1.CreatePersonaRequest): Promise<personaV1.CreatePersonaResponse> {
      const input = validateNewPersona({
        ownerId: req.ownerId,
        name: req.name,
        systemPrompt: req.systemPrompt,
        background: req.background,
        apiProfileId: req.apiProfileId ?? null,
        settings: fromProtoSettings(req.settings),
      });
      return { persona: toProto(await repo.create(input)) };
    },
    async getPersona(req: personaV1.GetPersonaRequest): Promise<personaV1.GetPersonaResponse> {
      return { persona: toProto(await load(req.ownerId, req.id)) };
    },
    async listPersonas(req: personaV1.ListPersonasRequest): Promise<personaV1.ListPersonasResponse> {
      if (!req.ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
      const size = Math.min(Math.max(req.pageSize || 50, 1), 200);
      const page = await repo.list(req.ownerId, size, req.pageToken ? decodeCursor(req.pageToken) : undefined);
      return { personas: page.personas.map(toProto), nextPageToken: page.next ? encodeCursor(page.next) : '' };
    },
  };
}
