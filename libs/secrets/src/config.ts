import { join } from 'node:path';
import { defineConfig, z, type ConfigOf } from '@chat/config';
import { Keyring, KeyringError, loadOrCreateKeyFile } from './keyring.js';

/** The master-key configuration slice, shared by every process that seals or opens secrets. */
export const secretsConfig = defineConfig({
  /**
   * Master keys, `v1:<base64 of 32 bytes>,v2:<base64>`. Unset: one random key is created in
   * MASTER_KEYS_FILE (default DATA_DIR/master-keys, mode 0600) and reused.
   */
  MASTER_KEYS: z
    .string()
    .superRefine((v, ctx) => {
      try {
        Keyring.parse(v);
      } catch (err) {
        // KeyringError messages name entries and versions, never key bytes.
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
      }
    })
    .optional(),
  /** The version new secrets are sealed with; default the highest version of MASTER_KEYS. */
  MASTER_KEY_VERSION: z.string().regex(/^v[0-9]{1,6}$/, 'must look like v1, v2, …').optional(),
  /** Where the embedded default keeps its generated master key; default DATA_DIR/master-keys. */
  MASTER_KEYS_FILE: z.string().optional(),
  /** The project data directory. */
  DATA_DIR: z.string().default('.data'),
});

/** loadKeyring builds the keyring from MASTER_KEYS, or else from (a newly created) key file. */
export async function loadKeyring(cfg: ConfigOf<typeof secretsConfig>, logger?: { info(message: string): void; warn(message: string): void }): Promise<Keyring> {
  let spec = cfg.MASTER_KEYS;
  if (!spec) {
    const file = cfg.MASTER_KEYS_FILE ?? join(cfg.DATA_DIR, 'master-keys');
    const loaded = await loadOrCreateKeyFile(file);
    spec = loaded.spec;
    // Never the key itself: the line names the file.
    logger?.info(`MASTER_KEYS is unset: ${loaded.created ? 'created' : 'using'} the local master key in ${file}; back it up, and set MASTER_KEYS in production`);
  }
  try {
    return Keyring.parse(spec, cfg.MASTER_KEY_VERSION);
  } catch (err) {
    if (err instanceof KeyringError) throw new KeyringError(`MASTER_KEY_VERSION / MASTER_KEYS: ${err.message}`);
    throw err;
  }
}
