import { AppError, Code } from '@chat/errors';
import type { RetrievalPrefs } from './retrieval.js';
import type { ConfiguredEmbedder } from './spaces.js';

/** LlmTarget is an OpenAI-compatible endpoint: where to send a chat completion, with which key. */
export interface LlmTarget {
  baseUrl: string;
  apiKey: string;
  model: string;
}

/** SealedKey is a profile's API key as the persona service stores it (opened only here). */
export interface SealedKey {
  ciphertext: Uint8Array;
  iv: Uint8Array;
  tag: Uint8Array;
  keyVersion: string;
}

/** PersonaProfile is what the persona service says about a persona's API profile. */
export type PersonaProfile = (
  | { kind: 'default' }
  | { kind: 'profile'; profileId: string; baseUrl: string; model: string; sealedKey?: SealedKey; embeddingModel?: string; embeddingBaseUrl?: string }
  /** The persona names a profile that does not exist (any more). */
  | { kind: 'missing'; profileId?: string }
) & {
  /** The persona's effective retrieval settings, when the source knows them. */
  retrieval?: RetrievalPrefs;
};

/**
 * PersonaProfileSource looks a persona's profile up at run time (ResolvePersona). Failures are
 * AppErrors: NOT_FOUND for an unknown persona, UNAVAILABLE when the persona service is unreachable.
 */
export interface PersonaProfileSource {
  fetch(ownerId: string, personaId: string): Promise<PersonaProfile>;
}

/** KeyOpener opens a sealed key with the profile id as associated data; it throws when it cannot. */
export type KeyOpener = (sealed: SealedKey, profileId: string) => string;

/** ResolvedEndpoint is the endpoint one reply of a persona goes to. */
export interface ResolvedEndpoint extends LlmTarget {
  /** The profile id, absent for the configured default endpoint. */
  profileId?: string;
}

/** ProfileResolverOptions configure the caches. */
export interface ProfileResolverOptions {
  /** Safety net: a cached resolution is refetched after this long even without an event. */
  ttlMs: number;
  now?: () => number;
}

interface PersonaEntry {
  ownerId: string;
  profile: PersonaProfile;
  expiresAt: number;
}

/** profileUnusable is the FAILED_PRECONDITION a reply fails with when its profile cannot be used. */
export function profileUnusable(message: string, details: Record<string, unknown> = {}): AppError {
  return new AppError(Code.FailedPrecondition, message, { reason: 'profile_unusable', details });
}

/**
 * ProfileResolver resolves persona → API profile → endpoint at run time. Resolutions are cached
 * per persona and opened keys per profile, key version and seal (a new key is a new seal), both
 * with a TTL safety net; persona and profile events invalidate them so a change applies to the
 * next reply. A lookup that races an invalidation is used but not cached.
 */
export class ProfileResolver {
  private readonly personas = new Map<string, PersonaEntry>();
  private readonly keys = new Map<string, { apiKey: string; expiresAt: number }>();
  private generation = 0;
  private readonly now: () => number;

  constructor(
    private readonly deps: { source: PersonaProfileSource; open: KeyOpener; defaultEndpoint: LlmTarget },
    private readonly options: ProfileResolverOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** resolve returns the endpoint of the persona's profile, or the default one; unusable profiles throw profile_unusable. */
  async resolve(ownerId: string, personaId: string): Promise<ResolvedEndpoint> {
    const profile = await this.profileOf(ownerId, personaId);
    switch (profile.kind) {
      case 'default':
        return { ...this.deps.defaultEndpoint };
      case 'missing':
        throw profileUnusable('the API profile of this persona is missing; set its api_profile_id to an existing profile', {
          persona_id: personaId,
          ...(profile.profileId ? { api_profile_id: profile.profileId } : {}),
        });
      case 'profile':
        return { profileId: profile.profileId, baseUrl: profile.baseUrl, model: profile.model, apiKey: this.keyOf(profile.profileId, profile.sealedKey) };
    }
  }

  /**
   * embedding is the embedding model the persona's profile names: the profile's embedding_model at
   * embedding_base_url (else the profile's base_url) with the profile's key; the local embedder
   * for the default profile and for profiles without an embedding_model.
   */
  async embedding(ownerId: string, personaId: string): Promise<ConfiguredEmbedder> {
    const profile = await this.profileOf(ownerId, personaId);
    if (profile.kind === 'missing') {
      throw profileUnusable('the API profile of this persona is missing; set its api_profile_id to an existing profile', { persona_id: personaId });
    }
    if (profile.kind === 'default' || !profile.embeddingModel) return { spec: { provider: 'local', model: this.localEmbeddingModel, baseUrl: '' }, apiKey: '' };
    return {
      spec: { provider: 'openai', model: profile.embeddingModel, baseUrl: profile.embeddingBaseUrl || profile.baseUrl },
      apiKey: this.keyOf(profile.profileId, profile.sealedKey),
    };
  }

  /** retrieval is the persona's effective retrieval settings ({} when unknown). */
  async retrieval(ownerId: string, personaId: string): Promise<RetrievalPrefs> {
    return (await this.profileOf(ownerId, personaId)).retrieval ?? {};
  }

  /** The name of the local embedder, reported for personas that use it. */
  localEmbeddingModel = 'local-hash-384';

  /** invalidatePersona drops a persona's cached resolution (persona upserted or deleted). */
  invalidatePersona(personaId: string): void {
    this.generation++;
    this.personas.delete(personaId);
  }

  /** personasOf lists the personas whose cached resolution names the profile. */
  personasOf(profileId: string): string[] {
    return [...this.personas].filter(([, e]) => e.profile.kind === 'profile' && e.profile.profileId === profileId).map(([id]) => id);
  }

  /** invalidateProfile drops every resolution naming the profile and its opened keys (profile changed or deleted). */
  invalidateProfile(profileId: string): void {
    this.generation++;
    for (const [personaId, e] of this.personas) if (e.profile.kind !== 'default' && e.profile.profileId === profileId) this.personas.delete(personaId);
    const prefix = `${profileId}\u0000`;
    for (const k of this.keys.keys()) if (k.startsWith(prefix)) this.keys.delete(k);
  }

  /** size reports the cache sizes (for tests and diagnostics). */
  get size(): { personas: number; keys: number } {
    return { personas: this.personas.size, keys: this.keys.size };
  }

  private async profileOf(ownerId: string, personaId: string): Promise<PersonaProfile> {
    const now = this.now();
    const hit = this.personas.get(personaId);
    if (hit && hit.ownerId === ownerId && hit.expiresAt > now) return hit.profile;
    const generation = this.generation;
    const profile = await this.deps.source.fetch(ownerId, personaId);
    // An event that arrived while we asked may describe a newer state than this answer.
    if (generation === this.generation && profile.kind !== 'missing') this.personas.set(personaId, { ownerId, profile, expiresAt: this.now() + this.options.ttlMs });
    return profile;
  }

  private keyOf(profileId: string, sealed: SealedKey | undefined): string {
    // A profile without a key (a local ollama or vLLM) still needs a non-empty bearer for the client.
    if (!sealed) return 'none';
    const cacheKey = `${profileId}\u0000${sealed.keyVersion}\u0000${Buffer.from(sealed.iv).toString('hex')}`;
    const now = this.now();
    const hit = this.keys.get(cacheKey);
    if (hit && hit.expiresAt > now) return hit.apiKey;
    let apiKey: string;
    try {
      apiKey = this.deps.open(sealed, profileId);
    } catch {
      // The opener's error is not passed on: whatever it says, the message stays free of key material.
      throw profileUnusable(
        `the API key of this persona's API profile cannot be opened (master key ${sealed.keyVersion} is not configured here, or the sealed key was altered); rag needs the same MASTER_KEYS as the persona service, or set the profile's api_key again`,
        { api_profile_id: profileId, key_version: sealed.keyVersion },
      );
    }
    this.keys.set(cacheKey, { apiKey, expiresAt: now + this.options.ttlMs });
    return apiKey;
  }
}
