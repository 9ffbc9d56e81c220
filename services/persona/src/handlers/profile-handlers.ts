import { AppError } from '@chat/errors';
import { personaV1 } from '@chat/contracts';
import { applyProfilePatch, validateApiProfile, type ApiProfile, type ApiProfileLimits } from '../domain/api-profile.js';
import { isUuid } from '../domain/persona.js';
import type { ProfileRepository } from '../adapters/postgres/profile-repo.js';
import { decodeCursor, encodeCursor } from './persona-handlers.js';

/** profileToProto renders a profile for gRPC: has_api_key and the fingerprint, never the key. */
export function profileToProto(p: ApiProfile): personaV1.ApiProfile {
  return personaV1.ApiProfile.fromPartial({
    id: p.id,
    ownerId: p.ownerId,
    name: p.name,
    provider: p.provider,
    baseUrl: p.baseUrl,
    model: p.model,
    embeddingModel: p.embeddingModel ?? undefined,
    embeddingBaseUrl: p.embeddingBaseUrl ?? undefined,
    limits: { maxConcurrentGenerations: p.limits.max_concurrent_generations, requestsPerMinute: p.limits.requests_per_minute },
    hasApiKey: p.apiKey !== null,
    apiKeyFingerprint: p.apiKey?.fingerprint ?? '',
    createdAt: p.createdAt,
    updatedAt: p.updatedAt,
  });
}

function fromProtoLimits(l: personaV1.ApiProfileLimits | undefined): ApiProfileLimits {
  const out: ApiProfileLimits = {};
  if (l?.maxConcurrentGenerations !== undefined) out.max_concurrent_generations = l.maxConcurrentGenerations;
  if (l?.requestsPerMinute !== undefined) out.requests_per_minute = l.requestsPerMinute;
  return out;
}

/** profileHandlers translates the API profile RPCs to the repository. */
export function profileHandlers(repo: ProfileRepository) {
  const owner = (ownerId: string) => {
    if (!ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
    return ownerId;
  };
  return {
    async createApiProfile(req: personaV1.CreateApiProfileRequest): Promise<personaV1.CreateApiProfileResponse> {
      const input = validateApiProfile({
        ownerId: req.ownerId,
        name: req.name,
        provider: req.provider,
        baseUrl: req.baseUrl,
        model: req.model,
        embeddingModel: req.embeddingModel ?? null,
        embeddingBaseUrl: req.embeddingBaseUrl ?? null,
        limits: fromProtoLimits(req.limits),
        apiKey: req.apiKey ?? null,
      });
      return { profile: profileToProto(await repo.create(input)) };
    },
    async getApiProfile(req: personaV1.GetApiProfileRequest): Promise<personaV1.GetApiProfileResponse> {
      const p = isUuid(req.id) ? await repo.get(owner(req.ownerId), req.id) : undefined;
      if (!p) throw AppError.notFound('api profile', req.id);
      return { profile: profileToProto(p) };
    },
    async listApiProfiles(req: personaV1.ListApiProfilesRequest): Promise<personaV1.ListApiProfilesResponse> {
      const size = Math.min(Math.max(req.pageSize || 50, 1), 200);
      const page = await repo.list(owner(req.ownerId), size, req.pageToken ? decodeCursor(req.pageToken) : undefined);
      return { profiles: page.profiles.map(profileToProto), nextPageToken: page.next ? encodeCursor(page.next) : '' };
    },
    async updateApiProfile(req: personaV1.UpdateApiProfileRequest): Promise<personaV1.UpdateApiProfileResponse> {
      owner(req.ownerId);
      const patch = {
        name: req.name,
        provider: req.provider,
        baseUrl: req.baseUrl,
        model: req.model,
        apiKey: req.apiKey,
        embeddingModel: req.embeddingModel,
        embeddingBaseUrl: req.embeddingBaseUrl,
        limits: req.limits ? fromProtoLimits(req.limits) : undefined,
        clear: req.clearFields,
      };
      const updated = isUuid(req.id) ? await repo.update(req.ownerId, req.id, (existing) => applyProfilePatch(existing, patch)) : undefined;
      if (!updated) throw AppError.notFound('api profile', req.id);
      return { profile: profileToProto(updated) };
    },
    async deleteApiProfile(req: personaV1.DeleteApiProfileRequest): Promise<personaV1.DeleteApiProfileResponse> {
      const deleted = isUuid(req.id) ? await repo.delete(owner(req.ownerId), req.id) : false;
      if (!deleted) throw AppError.notFound('api profile', req.id);
      return {};
    },
  };
}
