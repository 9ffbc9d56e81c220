import { randomUUID } from 'node:crypto';
import { AppError, Code } from '@chat/errors';
import { QueryTypes, type Outbox, type Sequelize, type Transaction } from '@chat/db';
import { eventsV1 } from '@chat/contracts';
import { encodeEvent, traceHeaders, Topics } from '@chat/events';
import { fingerprint, sealSecret, type Keyring } from '@chat/secrets';
import type { ApiProfile, ApiProfileInput, ApiProfileLimits, SealedKey } from '../../domain/api-profile.js';

export interface ProfileRow {
  id: string;
  owner_id: string;
  name: string;
  provider: string;
  base_url: string;
  model: string;
  embedding_model: string | null;
  embedding_base_url: string | null;
  limits: ApiProfileLimits;
  api_key_ciphertext: Buffer | null;
  api_key_iv: Buffer | null;
  api_key_tag: Buffer | null;
  api_key_version: string | null;
  api_key_fingerprint: string | null;
  created_at: Date;
  updated_at: Date;
}

export function toProfile(r: ProfileRow): ApiProfile {
  const apiKey: SealedKey | null =
    r.api_key_ciphertext && r.api_key_iv && r.api_key_tag && r.api_key_version && r.api_key_fingerprint
      ? { ciphertext: r.api_key_ciphertext, iv: r.api_key_iv, tag: r.api_key_tag, keyVersion: r.api_key_version, fingerprint: r.api_key_fingerprint }
      : null;
  return {
    id: r.id,
    ownerId: r.owner_id,
    name: r.name,
    provider: r.provider,
    baseUrl: r.base_url,
    model: r.model,
    embeddingModel: r.embedding_model,
    embeddingBaseUrl: r.embedding_base_url,
    limits: r.limits ?? {},
    apiKey,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** profileChanged writes an ApiProfileChanged event (never the key) inside the caller's transaction. */
export async function profileChanged(outbox: Outbox, t: Transaction, profileId: string, ownerId: string, deleted: boolean): Promise<void> {
  const event = eventsV1.ApiProfileChanged.fromPartial({ profileId, ownerId, deleted, occurredAt: new Date() });
  await outbox.add(t, Topics.profileEvents, {
    key: profileId,
    value: encodeEvent(eventsV1.ApiProfileChanged, event),
    headers: traceHeaders({ 'event-type': deleted ? 'profile.deleted' : 'profile.changed' }),
  });
}

/**
 * ProfileRepository stores API profiles. The plaintext key is sealed here (AES-256-GCM under the
 * current master key, associated data = profile id) and exists nowhere else in the service.
 */
export class ProfileRepository {
  constructor(
    private readonly sequelize: Sequelize,
    private readonly outbox: Outbox,
    private readonly keyring: Keyring,
  ) {}

  private seal(id: string, plaintext: string): SealedKey {
    return { ...sealSecret(this.keyring, plaintext, id), fingerprint: fingerprint(this.keyring, plaintext) };
  }

  private keyColumns(key: SealedKey | null) {
    return {
      ciphertext: key?.ciphertext ?? null,
      iv: key?.iv ?? null,
      tag: key?.tag ?? null,
      version: key?.keyVersion ?? null,
      fp: key?.fingerprint ?? null,
    };
  }

  /** create stores a new profile. */
  async create(input: ApiProfileInput): Promise<ApiProfile> {
    const id = randomUUID();
    const key = typeof input.apiKey === 'string' ? this.seal(id, input.apiKey) : null;
    const rows = await this.sequelize.query<ProfileRow>(
      `insert into persona.api_profiles (id, owner_id, name, provider, base_url, model, embedding_model, embedding_base_url, limits,
         api_key_ciphertext, api_key_iv, api_key_tag, api_key_version, api_key_fingerprint)
       values (:id, :owner, :name, :provider, :baseUrl, :model, :embeddingModel, :embeddingBaseUrl, :limits, :ciphertext, :iv, :tag, :version, :fp)
       returning *`,
      {
        replacements: {
          id,
          owner: input.ownerId,
          name: input.name,
          provider: input.provider,
          baseUrl: input.baseUrl,
          model: input.model,
          embeddingModel: input.embeddingModel,
          embeddingBaseUrl: input.embeddingBaseUrl,
          limits: JSON.stringify(input.limits),
          ...this.keyColumns(key),
        },
        type: QueryTypes.SELECT,
      },
    );
    return toProfile(rows[0]!);
  }

  /** get returns the profile when it exists and belongs to the owner. */
  async get(ownerId: string, id: string, t?: Transaction, lock?: 'update' | 'share'): Promise<ApiProfile | undefined> {
    const rows = await this.sequelize.query<ProfileRow>(`select * from persona.api_profiles where id = :id and owner_id = :owner${lock ? ` for ${lock}` : ''}`, {
      replacements: { id, owner: ownerId },
      type: QueryTypes.SELECT,
      transaction: t,
    });
    return rows[0] ? toProfile(rows[0]) : undefined;
  }

  /** list returns one page of the owner's profiles, newest first, and the cursor of the next page. */
  async list(ownerId: string, pageSize: number, cursor?: { createdAt: Date; id: string }): Promise<{ profiles: ApiProfile[]; next?: { createdAt: Date; id: string } }> {
    const rows = await this.sequelize.query<ProfileRow>(
      `select * from persona.api_profiles where owner_id = :owner
       ${cursor ? 'and (created_at, id) < (:cursorAt, :cursorId)' : ''}
       order by created_at desc, id desc limit :limit`,
      { replacements: { owner: ownerId, cursorAt: cursor?.createdAt ?? null, cursorId: cursor?.id ?? null, limit: pageSize + 1 }, type: QueryTypes.SELECT },
    );
    const profiles = rows.slice(0, pageSize).map(toProfile);
    const last = profiles[profiles.length - 1];
    return { profiles, next: rows.length > pageSize && last ? { createdAt: last.createdAt, id: last.id } : undefined };
  }

  /**
   * update locks the profile, merges the patch (merge validates and may throw), stores it and its
   * ApiProfileChanged event in one transaction. undefined when the owner has no such profile.
   */
  async update(ownerId: string, id: string, merge: (existing: ApiProfile) => ApiProfileInput): Promise<ApiProfile | undefined> {
    const updated = await this.sequelize.transaction(async (t) => {
      const existing = await this.get(ownerId, id, t, 'update');
      if (!existing) return undefined;
      const next = merge(existing);
      const key = next.apiKey === undefined ? existing.apiKey : next.apiKey === null ? null : this.seal(id, next.apiKey);
      const rows = await this.sequelize.query<ProfileRow>(
        `update persona.api_profiles set name = :name, provider = :provider, base_url = :baseUrl, model = :model,
           embedding_model = :embeddingModel, embedding_base_url = :embeddingBaseUrl, limits = :limits,
           api_key_ciphertext = :ciphertext, api_key_iv = :iv, api_key_tag = :tag, api_key_version = :version, api_key_fingerprint = :fp,
           updated_at = now()
         where id = :id and owner_id = :owner returning *`,
        {
          replacements: {
            id,
            owner: ownerId,
            name: next.name,
            provider: next.provider,
            baseUrl: next.baseUrl,
            model: next.model,
            embeddingModel: next.embeddingModel,
            embeddingBaseUrl: next.embeddingBaseUrl,
            limits: JSON.stringify(next.limits),
            ...this.keyColumns(key),
          },
          type: QueryTypes.SELECT,
          transaction: t,
        },
      );
      await profileChanged(this.outbox, t, id, ownerId, false);
      return toProfile(rows[0]!);
    });
    if (updated) this.outbox.kick();
    return updated;
  }

  /**
   * delete removes a profile no persona names, with its ApiProfileChanged event. The profile row is
   * locked first; persona writes lock it FOR SHARE while checking it, so a persona cannot start
   * naming a profile that is being deleted. false when the owner has no such profile.
   */
  async delete(ownerId: string, id: string): Promise<boolean> {
    const deleted = await this.sequelize.transaction(async (t) => {
      const existing = await this.get(ownerId, id, t, 'update');
      if (!existing) return false;
      const users = await this.sequelize.query<{ id: string }>(
        'select id from persona.personas where api_profile_id = :id and owner_id = :owner order by created_at, id limit 101',
        { replacements: { id, owner: ownerId }, type: QueryTypes.SELECT, transaction: t },
      );
      if (users.length > 0) {
        const ids = users.slice(0, 100).map((u) => u.id);
        throw new AppError(Code.Aborted, `the API profile is used by ${users.length > 100 ? 'more than 100' : users.length} persona(s); point them at another profile first`, {
          reason: 'profile_in_use',
          details: { kind: 'api profile', id, persona_ids: ids, ...(users.length > 100 ? { truncated: true } : {}) },
        });
      }
      await this.sequelize.query('delete from persona.api_profiles where id = :id and owner_id = :owner', { replacements: { id, owner: ownerId }, transaction: t });
      await profileChanged(this.outbox, t, id, ownerId, true);
      return true;
    });
    if (deleted) this.outbox.kick();
    return deleted;
  }
}
