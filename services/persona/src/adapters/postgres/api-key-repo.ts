import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { AppError, Code } from '@chat/errors';
import { QueryTypes, type Sequelize } from '@chat/db';

/** A stored API key's description (the key itself is never stored, only its SHA-256 digest). */
export interface StoredApiKey {
  id: string;
  ownerId: string;
  name: string;
  prefix: string;
  createdAt: Date;
  revokedAt: Date | null;
}

interface KeyRow {
  id: string;
  owner_id: string;
  name: string;
  prefix: string;
  created_at: Date;
  revoked_at: Date | null;
}

const toKey = (r: KeyRow): StoredApiKey => ({ id: r.id, ownerId: r.owner_id, name: r.name, prefix: r.prefix, createdAt: r.created_at, revokedAt: r.revoked_at });

/** Live (unrevoked) keys one owner may have at once. */
export const MAX_LIVE_KEYS_PER_OWNER = 100;

/** An owner id: the same characters API_KEYS accepts. */
export const OWNER_PATTERN = /^[A-Za-z0-9_.@-]{1,100}$/;

/** digestOf is the SHA-256 of a key, what the store keeps and looks keys up by. */
export const digestOf = (key: string): Buffer => createHash('sha256').update(key).digest();

/** newApiKey makes a random key: `pk_` and 32 random bytes in base64url (256 bits). */
export const newApiKey = (): string => `pk_${randomBytes(32).toString('base64url')}`;

/**
 * ApiKeyRepository keeps API keys as digests with an owner, and the used ws_token nonces. Lookups
 * by digest are exact (a unique index); a digest of a random 256-bit key cannot be guessed.
 */
export class ApiKeyRepository {
  private consumed = 0;

  constructor(private readonly sequelize: Sequelize) {}

  /** create stores a new random key for an owner and returns it with the only copy of the secret. */
  async create(ownerId: string, name: string): Promise<{ key: StoredApiKey; secret: string }> {
    if (!OWNER_PATTERN.test(ownerId)) throw AppError.invalid('owner_id must be 1..100 characters of [A-Za-z0-9_.@-]', { owner_id: 'is invalid' });
    const label = name.trim() || 'key';
    if (label.length > 100) throw AppError.invalid('name must be at most 100 characters', { name: 'must be at most 100 characters' });
    const secret = newApiKey();
    return this.sequelize.transaction(async (t) => {
      // Serialise creations of one owner so the live-key cap holds.
      await this.sequelize.query('select pg_advisory_xact_lock(hashtext(:k))', { replacements: { k: `api_keys:${ownerId}` }, transaction: t });
      const [{ n }] = (await this.sequelize.query<{ n: string }>('select count(*) as n from persona.api_keys where owner_id = :owner and revoked_at is null', {
        replacements: { owner: ownerId },
        type: QueryTypes.SELECT,
        transaction: t,
      })) as [{ n: string }];
      if (Number(n) >= MAX_LIVE_KEYS_PER_OWNER) {
        throw new AppError(Code.FailedPrecondition, `an owner may have at most ${MAX_LIVE_KEYS_PER_OWNER} live API keys; revoke one first`, {
          reason: 'too_many_api_keys',
          details: { limit: MAX_LIVE_KEYS_PER_OWNER },
        });
      }
      const rows = await this.sequelize.query<KeyRow>(
        `insert into persona.api_keys (id, owner_id, name, prefix, digest) values (:id, :owner, :name, :prefix, :digest)
         returning id, owner_id, name, prefix, created_at, revoked_at`,
        { replacements: { id: randomUUID(), owner: ownerId, name: label, prefix: secret.slice(0, 8), digest: digestOf(secret) }, type: QueryTypes.SELECT, transaction: t },
      );
      return { key: toKey(rows[0]!), secret };
    });
  }

  /** list returns an owner's keys, newest first (revoked ones too, marked). */
  async list(ownerId: string): Promise<StoredApiKey[]> {
    const rows = await this.sequelize.query<KeyRow>(
      'select id, owner_id, name, prefix, created_at, revoked_at from persona.api_keys where owner_id = :owner order by created_at desc, id desc',
      { replacements: { owner: ownerId }, type: QueryTypes.SELECT },
    );
    return rows.map(toKey);
  }

  /** revoke marks one key of an owner revoked (keeping the first revocation time); undefined when not the owner's. */
  async revoke(ownerId: string, id: string): Promise<StoredApiKey | undefined> {
    const rows = await this.sequelize.query<KeyRow>(
      `update persona.api_keys set revoked_at = coalesce(revoked_at, now()) where id = :id and owner_id = :owner
       returning id, owner_id, name, prefix, created_at, revoked_at`,
      { replacements: { id, owner: ownerId }, type: QueryTypes.SELECT },
    );
    return rows[0] ? toKey(rows[0]) : undefined;
  }

  /** authenticate returns the live key with this digest, or undefined. */
  async authenticate(digest: Buffer): Promise<StoredApiKey | undefined> {
    const rows = await this.sequelize.query<KeyRow>(
      'select id, owner_id, name, prefix, created_at, revoked_at from persona.api_keys where digest = :digest and revoked_at is null',
      { replacements: { digest }, type: QueryTypes.SELECT },
    );
    return rows[0] ? toKey(rows[0]) : undefined;
  }

  /**
   * consumeNonce records a ws_token nonce; false when it was recorded before (a replay). Expired
   * nonces are deleted every 100 calls (a token past its expiry is refused before this is asked).
   */
  async consumeNonce(nonce: string, expiresAt: Date): Promise<boolean> {
    if (++this.consumed % 100 === 0) await this.sequelize.query('delete from persona.ws_token_nonces where expires_at < now()');
    const rows = await this.sequelize.query<{ nonce: string }>(
      'insert into persona.ws_token_nonces (nonce, expires_at) values (:nonce, :exp) on conflict (nonce) do nothing returning nonce',
      { replacements: { nonce, exp: expiresAt }, type: QueryTypes.SELECT },
    );
    return rows.length === 1;
  }
}
