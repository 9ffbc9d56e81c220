import { AppError } from '@chat/errors';
import { personaV1 } from '@chat/contracts';
import type { ApiKeyRepository, StoredApiKey } from '../adapters/postgres/api-key-repo.js';
import { isUuid } from '../domain/persona.js';

/** apiKeyToProto renders a key's description (never the secret or its digest). */
export function apiKeyToProto(k: StoredApiKey): personaV1.ApiKey {
  return personaV1.ApiKey.fromPartial({ id: k.id, ownerId: k.ownerId, name: k.name, prefix: k.prefix, createdAt: k.createdAt, revokedAt: k.revokedAt ?? undefined });
}

/** apiKeyHandlers translates chat.persona.v1.ApiKeyService to the repository. */
export function apiKeyHandlers(repo: ApiKeyRepository) {
  const owner = (ownerId: string) => {
    if (!ownerId) throw AppError.invalid('owner_id is required', { owner_id: 'is required' });
    return ownerId;
  };
  return {
    async createApiKey(req: personaV1.CreateApiKeyRequest): Promise<personaV1.CreateApiKeyResponse> {
      const { key, secret } = await repo.create(owner(req.ownerId), req.name);
      return { apiKey: apiKeyToProto(key), secret };
    },
    async listApiKeys(req: personaV1.ListApiKeysRequest): Promise<personaV1.ListApiKeysResponse> {
      return { apiKeys: (await repo.list(owner(req.ownerId))).map(apiKeyToProto) };
    },
    async revokeApiKey(req: personaV1.RevokeApiKeyRequest): Promise<personaV1.RevokeApiKeyResponse> {
      const key = isUuid(req.id) ? await repo.revoke(owner(req.ownerId), req.id) : undefined;
      if (!key) throw AppError.notFound('api key', req.id);
      return { apiKey: apiKeyToProto(key) };
    },
    async authenticateApiKey(req: personaV1.AuthenticateApiKeyRequest): Promise<personaV1.AuthenticateApiKeyResponse> {
      if (req.digest.length !== 32) throw AppError.invalid('digest must be 32 bytes (SHA-256)', { digest: 'must be 32 bytes' });
      const key = await repo.authenticate(Buffer.from(req.digest));
      if (!key) throw AppError.notFound('api key', '(digest)');
      return { keyId: key.id, ownerId: key.ownerId };
    },
    async consumeNonce(req: personaV1.ConsumeNonceRequest): Promise<personaV1.ConsumeNonceResponse> {
      if (!/^[A-Za-z0-9_-]{8,100}$/.test(req.nonce)) throw AppError.invalid('nonce must be 8..100 base64url characters', { nonce: 'is invalid' });
      if (!req.expiresAt) throw AppError.invalid('expires_at is required', { expires_at: 'is required' });
      return { firstUse: await repo.consumeNonce(req.nonce, req.expiresAt) };
    },
  };
}
