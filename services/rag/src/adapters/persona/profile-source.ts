import { personaV1 } from '@chat/contracts';
import { AppError, Code, toAppError } from '@chat/errors';
import { openSecret, type Keyring } from '@chat/secrets';
import type { KeyOpener, PersonaProfile, PersonaProfileSource } from '../../domain/profiles.js';
import type { RetrievalPrefs } from '../../domain/retrieval.js';

/** ResolvePersonaCall is PersonaClient.resolvePersona (or a fake of it). */
export type ResolvePersonaCall = (req: { ownerId: string; personaId: string }) => Promise<personaV1.ResolvePersonaResponse>;

/** GrpcPersonaProfileSource asks the persona service (ResolvePersona) for a persona's profile; the key stays sealed. */
export class GrpcPersonaProfileSource implements PersonaProfileSource {
  constructor(private readonly resolvePersona: ResolvePersonaCall) {}

  async fetch(ownerId: string, personaId: string): Promise<PersonaProfile> {
    let res: personaV1.ResolvePersonaResponse;
    try {
      res = await this.resolvePersona({ ownerId, personaId });
    } catch (err) {
      const app = toAppError(err);
      if (app.code === Code.FailedPrecondition && app.reason === 'profile_missing') {
        const id = app.details.api_profile_id;
        return { kind: 'missing', ...(typeof id === 'string' ? { profileId: id } : {}) };
      }
      if (app.code === Code.Unavailable || app.code === Code.DeadlineExceeded) {
        throw new AppError(Code.Unavailable, "the persona service is unavailable, so the persona's API profile cannot be resolved", { reason: 'unavailable', cause: err });
      }
      throw app;
    }
    const retrieval = retrievalPrefs(res.effectiveSettings?.retrieval);
    if (res.usesDefaultProfile) return { kind: 'default', retrieval };
    const profile = res.profile?.profile;
    if (!profile) return { kind: 'missing', ...(res.persona?.apiProfileId ? { profileId: res.persona.apiProfileId } : {}) };
    const k = res.profile?.sealedApiKey;
    return {
      kind: 'profile',
      profileId: profile.id,
      baseUrl: profile.baseUrl,
      model: profile.model,
      ...(profile.embeddingModel ? { embeddingModel: profile.embeddingModel } : {}),
      ...(profile.embeddingBaseUrl ? { embeddingBaseUrl: profile.embeddingBaseUrl } : {}),
      ...(k && k.ciphertext.length > 0 ? { sealedKey: { ciphertext: k.ciphertext, iv: k.iv, tag: k.tag, keyVersion: k.keyVersion } } : {}),
      retrieval,
    };
  }
}

/** retrievalPrefs reads the persona's effective retrieval settings (unset fields stay unset). */
function retrievalPrefs(r: personaV1.RetrievalSettings | undefined): RetrievalPrefs {
  if (!r) return {};
  return {
    ...(r.topK !== undefined ? { topK: r.topK } : {}),
    ...(r.scoreThreshold !== undefined ? { scoreThreshold: r.scoreThreshold } : {}),
    ...(r.mode === personaV1.RetrievalMode.RETRIEVAL_MODE_HYBRID ? { mode: 'hybrid' as const } : r.mode === personaV1.RetrievalMode.RETRIEVAL_MODE_DENSE ? { mode: 'dense' as const } : {}),
    ...(r.rerank !== undefined ? { rerank: r.rerank } : {}),
    ...(r.queryRewrite !== undefined ? { queryRewrite: r.queryRewrite } : {}),
  };
}

/** keyOpener opens sealed profile keys with the local keyring (the profile id is the associated data). */
export function keyOpener(keyring: Keyring): KeyOpener {
  return (sealed, profileId) =>
    openSecret(keyring, { ciphertext: Buffer.from(sealed.ciphertext), iv: Buffer.from(sealed.iv), tag: Buffer.from(sealed.tag), keyVersion: sealed.keyVersion }, profileId);
}
