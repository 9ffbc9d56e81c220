import { createHash } from 'node:crypto';
import { personaV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import type { PersonaApi } from '../src/deps.js';

/*
 * An in-memory stand-in for the persona service (personas and API profiles). Like the real one it
 * answers NOT_FOUND for an unknown id and for an id that belongs to another owner, never returns an
 * api_key, and refuses to delete a profile a persona names (ABORTED, profile_in_use).
 */

let counter = 0;
const nextId = (prefix: string) => `${prefix}_${++counter}`;

export class FakePersonas implements PersonaApi {
  readonly personas = new Map<string, personaV1.Persona>();
  readonly profiles = new Map<string, personaV1.ApiProfile>();
  /** What the fake "stored" as the key of each profile (tests check it was passed through). */
  readonly keys = new Map<string, string>();
  readonly calls: Array<{ method: string; req: unknown }> = [];

  async createPersona(req: personaV1.DeepPartial<personaV1.CreatePersonaRequest>): Promise<personaV1.CreatePersonaResponse> {
    this.calls.push({ method: 'createPersona', req });
    const full = personaV1.CreatePersonaRequest.fromPartial(req);
    if (full.apiProfileId !== undefined) this.ownProfile(full.ownerId, full.apiProfileId);
    const now = new Date();
    const persona = personaV1.Persona.fromPartial({ ...full, id: nextId('per'), createdAt: now, updatedAt: now });
    this.personas.set(persona.id, persona);
    return { persona };
  }

  private ownPersona(ownerId: string | undefined, id: string | undefined): personaV1.Persona {
    const p = this.personas.get(id ?? '');
    if (!p || p.ownerId !== ownerId) throw AppError.notFound('persona', id ?? '');
    return p;
  }

  private ownProfile(ownerId: string | undefined, id: string | undefined): personaV1.ApiProfile {
    const p = this.profiles.get(id ?? '');
    if (!p || p.ownerId !== ownerId) throw AppError.notFound('api profile', id ?? '');
    return p;
  }

  async getPersona(req: personaV1.DeepPartial<personaV1.GetPersonaRequest>): Promise<personaV1.GetPersonaResponse> {
    this.calls.push({ method: 'getPersona', req });
    return { persona: this.ownPersona(req.ownerId, req.id) };
  }

  async listPersonas(req: personaV1.DeepPartial<personaV1.ListPersonasRequest>): Promise<personaV1.ListPersonasResponse> {
    this.calls.push({ method: 'listPersonas', req });
    return { personas: [...this.personas.values()].filter((p) => p.ownerId === req.ownerId), nextPageToken: '' };
  }

  async updatePersona(req: personaV1.DeepPartial<personaV1.UpdatePersonaRequest>): Promise<personaV1.UpdatePersonaResponse> {
    this.calls.push({ method: 'updatePersona', req });
    const full = personaV1.UpdatePersonaRequest.fromPartial(req);
    const p = this.ownPersona(full.ownerId, full.id);
    if (full.apiProfileId !== undefined) this.ownProfile(full.ownerId, full.apiProfileId);
    const next = personaV1.Persona.fromPartial({
      ...p,
      name: full.name ?? p.name,
      systemPrompt: full.systemPrompt ?? p.systemPrompt,
      background: full.background ?? p.background,
      apiProfileId: full.clearFields.includes('api_profile_id') ? undefined : (full.apiProfileId ?? p.apiProfileId),
      updatedAt: new Date(),
    });
    this.personas.set(next.id, next);
    return { persona: next };
  }

  async deletePersona(req: personaV1.DeepPartial<personaV1.DeletePersonaRequest>): Promise<personaV1.DeletePersonaResponse> {
    this.calls.push({ method: 'deletePersona', req });
    const p = this.ownPersona(req.ownerId, req.id);
    this.personas.delete(p.id);
    return {};
  }

  private fp = (key: string) => `…${createHash('sha256').update(`fp:${key}`).digest('hex').slice(0, 8)}`;

  async createApiProfile(req: personaV1.DeepPartial<personaV1.CreateApiProfileRequest>): Promise<personaV1.CreateApiProfileResponse> {
    this.calls.push({ method: 'createApiProfile', req: { ...req, apiKey: req.apiKey === undefined ? undefined : '[given]' } });
    const full = personaV1.CreateApiProfileRequest.fromPartial(req);
    const now = new Date();
    const id = nextId('prof');
    const { apiKey, ...rest } = full;
    const profile = personaV1.ApiProfile.fromPartial({ ...rest, id, hasApiKey: apiKey !== undefined, apiKeyFingerprint: apiKey ? this.fp(apiKey) : '', createdAt: now, updatedAt: now });
    if (apiKey !== undefined) this.keys.set(id, apiKey);
    this.profiles.set(id, profile);
    return { profile };
  }

  async getApiProfile(req: personaV1.DeepPartial<personaV1.GetApiProfileRequest>): Promise<personaV1.GetApiProfileResponse> {
    this.calls.push({ method: 'getApiProfile', req });
    return { profile: this.ownProfile(req.ownerId, req.id) };
  }

  async listApiProfiles(req: personaV1.DeepPartial<personaV1.ListApiProfilesRequest>): Promise<personaV1.ListApiProfilesResponse> {
    this.calls.push({ method: 'listApiProfiles', req });
    return { profiles: [...this.profiles.values()].filter((p) => p.ownerId === req.ownerId), nextPageToken: '' };
  }

  async updateApiProfile(req: personaV1.DeepPartial<personaV1.UpdateApiProfileRequest>): Promise<personaV1.UpdateApiProfileResponse> {
    this.calls.push({ method: 'updateApiProfile', req: { ...req, apiKey: req.apiKey === undefined ? undefined : '[given]' } });
    const full = personaV1.UpdateApiProfileRequest.fromPartial(req);
    const p = this.ownProfile(full.ownerId, full.id);
    const clear = new Set(full.clearFields);
    if (full.apiKey !== undefined) this.keys.set(p.id, full.apiKey);
    if (clear.has('api_key')) this.keys.delete(p.id);
    const key = this.keys.get(p.id);
    const next = personaV1.ApiProfile.fromPartial({
      ...p,
      name: full.name ?? p.name,
      provider: full.provider ?? p.provider,
      baseUrl: full.baseUrl ?? p.baseUrl,
      model: full.model ?? p.model,
      embeddingModel: clear.has('embedding_model') ? undefined : (full.embeddingModel ?? p.embeddingModel),
      embeddingBaseUrl: clear.has('embedding_base_url') ? undefined : (full.embeddingBaseUrl ?? p.embeddingBaseUrl),
      limits: clear.has('limits') ? {} : { ...p.limits, ...Object.fromEntries(Object.entries(full.limits ?? {}).filter(([, v]) => v !== undefined)) },
      hasApiKey: key !== undefined,
      apiKeyFingerprint: key ? this.fp(key) : '',
      updatedAt: new Date(),
    });
    this.profiles.set(p.id, next);
    return { profile: next };
  }

  async deleteApiProfile(req: personaV1.DeepPartial<personaV1.DeleteApiProfileRequest>): Promise<personaV1.DeleteApiProfileResponse> {
    this.calls.push({ method: 'deleteApiProfile', req });
    const p = this.ownProfile(req.ownerId, req.id);
    const users = [...this.personas.values()].filter((x) => x.apiProfileId === p.id).map((x) => x.id);
    if (users.length) throw new AppError(Code.Aborted, `the API profile is used by ${users.length} persona(s)`, { reason: 'profile_in_use', details: { kind: 'api profile', id: p.id, persona_ids: users } });
    this.profiles.delete(p.id);
    this.keys.delete(p.id);
    return {};
  }
}
