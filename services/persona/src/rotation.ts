import { Outbox, QueryTypes, type Sequelize } from '@chat/db';
import type { EventBus } from '@chat/events';
import type { Logger } from '@chat/logger';
import { openSecret, sealSecret, SecretError, type Keyring } from '@chat/secrets';
import { profileChanged } from './adapters/postgres/profile-repo.js';
import { SCHEMA } from './adapters/postgres/migrations.js';

/** RotationReport counts what a rotation run did. */
export interface RotationReport {
  /** The version every key is sealed with afterwards. */
  keyVersion: string;
  /** Profiles re-sealed by this run. */
  rotated: number;
  /** Profiles with a key that already were on the current version. */
  alreadyCurrent: number;
  /** Batches (transactions) committed. */
  batches: number;
}

/** The rotation only adds to the outbox; the persona service's relay publishes those events. */
const noBus: EventBus = {
  kind: 'in-process',
  ensureTopics: async () => {},
  publish: async () => {
    throw new Error('the rotation command does not publish events itself');
  },
  subscribe: async () => {
    throw new Error('the rotation command does not subscribe');
  },
  close: async () => {},
};

interface Row {
  id: string;
  owner_id: string;
  api_key_ciphertext: Buffer;
  api_key_iv: Buffer;
  api_key_tag: Buffer;
  api_key_version: string;
}

/**
 * rotateApiKeys re-seals every API key that is not on the keyring's current version, batchSize rows
 * per transaction (rows locked, SKIP LOCKED so a running service is not blocked), each with an
 * ApiProfileChanged event so resolvers drop cached keys. Idempotent: a second run rotates nothing.
 * A key that does not open (its version is not configured, or it was altered) stops the run with
 * the profile id; batches already committed stay rotated and a re-run continues.
 */
export async function rotateApiKeys(sequelize: Sequelize, keyring: Keyring, logger: Logger, batchSize = 100): Promise<RotationReport> {
  const outbox = new Outbox(sequelize, SCHEMA, noBus, logger);
  const report: RotationReport = { keyVersion: keyring.current, rotated: 0, alreadyCurrent: 0, batches: 0 };
  for (;;) {
    const done = await sequelize.transaction(async (t) => {
      const rows = await sequelize.query<Row>(
        `select id, owner_id, api_key_ciphertext, api_key_iv, api_key_tag, api_key_version from persona.api_profiles
         where api_key_version is not null and api_key_version <> :current
         order by id limit :limit for update skip locked`,
        { replacements: { current: keyring.current, limit: batchSize }, type: QueryTypes.SELECT, transaction: t },
      );
      for (const r of rows) {
        let plaintext: string;
        try {
          plaintext = openSecret(keyring, { ciphertext: r.api_key_ciphertext, iv: r.api_key_iv, tag: r.api_key_tag, keyVersion: r.api_key_version }, r.id);
        } catch (err) {
          if (err instanceof SecretError) throw new SecretError(`API profile ${r.id}: ${err.message}`);
          throw err;
        }
        const sealed = sealSecret(keyring, plaintext, r.id);
        await sequelize.query(
          `update persona.api_profiles set api_key_ciphertext = :ciphertext, api_key_iv = :iv, api_key_tag = :tag, api_key_version = :version
           where id = :id`,
          { replacements: { id: r.id, ciphertext: sealed.ciphertext, iv: sealed.iv, tag: sealed.tag, version: sealed.keyVersion }, transaction: t },
        );
        await profileChanged(outbox, t, r.id, r.owner_id, false);
      }
      return rows.length;
    });
    if (done === 0) break;
    report.rotated += done;
    report.batches += 1;
    logger.info('re-sealed a batch of API keys', { count: done, key_version: keyring.current });
    if (done < batchSize) break;
  }
  const [row] = await sequelize.query<{ n: number }>('select count(*)::int as n from persona.api_profiles where api_key_version = :current', {
    replacements: { current: keyring.current },
    type: QueryTypes.SELECT,
  });
  report.alreadyCurrent = (row?.n ?? 0) - report.rotated;
  return report;
}
