import { AppError } from '@chat/errors';
import { personaV1 } from '@chat/contracts';
import { Code } from '@chat/errors';
import { applyPersonaPatch, effectiveSettings, isUuid, validateNewPersona, type Persona, type PersonaSettings } from '../domain/persona.js';
import type { PersonaRepository } from '../adapters/postgres/persona-repo.js';
import type { ProfileRepository } from '../adapters/postgres/profile-repo.js';
import { profileToProto } from './profile-handlers.js';

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
export function encodeCursor(c: { createdAt: Date; id: string }): string {
  return Buffer.from(JSON.stringify([c.createdAt.toISOString(), c.id])).toString('base64url');
}
export function decodeCursor(token: string): { createdAt: Date; id: string } {
  try {
    const [at, id] = JSON.parse(Buffer.from(token, 'base64url').toString()) as [string, string];
    const createdAt = new Date(at);
    if (Number.isNaN(createdAt.getTime()) || !isUuid(id)) throw new Error('bad cursor');
    return { createdAt, id };
  } catch {
    throw AppError.invalid('page_token is not valid', { page_token: 'is not a token this service issued' });
  }
}

/** personaHandlers translates gRPC calls to the repositories. */
export function personaHandlers(repo: PersonaRepository, profiles: ProfileRepository) {
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
    async updatePersona(req: personaV1.UpdatePersonaRequest): Promise<personaV1.UpdatePersonaResponse> {
      if (!req.ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
      if (req.apiProfileId !== undefined && req.apiProfileId !== '' && !isUuid(req.apiProfileId)) {
        throw AppError.invalid('the persona is not valid', { api_profile_id: 'must be an API profile id' });
      }
      const patch = {
        name: req.name,
        systemPrompt: req.systemPrompt,
        background: req.background,
        apiProfileId: req.apiProfileId,
        settings: req.settings ? fromProtoSettings(req.settings) : undefined,
        clear: req.clearFields,
      };
      const updated = isUuid(req.id) ? await repo.update(req.ownerId, req.id, (existing) => applyPersonaPatch(existing, patch)) : undefined;
      if (!updated) throw AppError.notFound('persona', req.id);
      return { persona: toProto(updated) };
    },
    async deletePersona(req: personaV1.DeletePersonaRequest): Promise<personaV1.DeletePersonaResponse> {
      if (!req.ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
      const deleted = isUuid(req.id) ? await repo.delete(req.ownerId, req.id) : false;
      if (!deleted) throw AppError.notFound('persona', req.id);
      return {};
    },
    async resolvePersona(req: personaV1.ResolvePersonaRequest): Promise<personaV1.ResolvePersonaResponse> {
      const persona = await load(req.ownerId, req.personaId);
      const effective = toProto({ ...persona, settings: effectiveSettings(persona.settings) }).settings;
      if (!persona.apiProfileId) return { persona: toProto(persona), effectiveSettings: effective, profile: undefined, usesDefaultProfile: true };
      const profile = await profiles.get(persona.ownerId, persona.apiProfileId);
      if (!profile) {
        // Only personas stored before profiles were checked can name a missing profile.
        throw new AppError(Code.FailedPrecondition, 'the persona names an API profile that does not exist; set its api_profile_id again', {
          reason: 'profile_missing',
          details: { persona_id: persona.id, api_profile_id: persona.apiProfileId },
        });
      }
      const k = profile.apiKey;
      return {
        persona: toProto(persona),
        effectiveSettings: effective,
        profile: {
          profile: profileToProto(profile),
          sealedApiKey: k ? { ciphertext: k.ciphertext, iv: k.iv, tag: k.tag, keyVersion: k.keyVersion } : undefined,
        },
        usesDefaultProfile: false,
      };
    },
  };
}
