import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import type { Keyring } from './keyring.js';

/** SealedSecret is an AES-256-GCM ciphertext with what is needed to open it (except the key). */
export interface SealedSecret {
  ciphertext: Buffer;
  /** 12-byte GCM nonce, random per seal. */
  iv: Buffer;
  /** 16-byte GCM authentication tag. */
  tag: Buffer;
  /** The master key version it was sealed under. */
  keyVersion: string;
}

/** SecretError says a sealed secret could not be opened (wrong key, AAD, or tampering); no details leak. */
export class SecretError extends Error {
  override readonly name = 'SecretError';
}

const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The encryption key of a version: HKDF of the master key, so the master key itself encrypts nothing. */
function encryptionKey(keyring: Keyring, version: string): Buffer {
  return Buffer.from(hkdfSync('sha256', keyring.key(version), Buffer.alloc(0), 'chat/secrets/aes-256-gcm/v1', 32));
}

/**
 * sealSecret encrypts plaintext under the keyring's current version with AES-256-GCM. aad (e.g. the
 * owning row's id) is authenticated but not stored: opening with another aad fails, so a sealed
 * value copied to another row does not open there.
 */
export function sealSecret(keyring: Keyring, plaintext: string, aad: string): SealedSecret {
  const keyVersion = keyring.current;
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', encryptionKey(keyring, keyVersion), iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { ciphertext, iv, tag: cipher.getAuthTag(), keyVersion };
}

/** openSecret decrypts a sealed secret; a wrong aad, key or any tampering throws SecretError. */
export function openSecret(keyring: Keyring, sealed: SealedSecret, aad: string): string {
  if (!keyring.has(sealed.keyVersion)) throw new SecretError(`the secret is sealed with master key ${JSON.stringify(sealed.keyVersion)}, which is not configured`);
  if (sealed.iv.length !== IV_BYTES || sealed.tag.length !== TAG_BYTES) throw new SecretError('the sealed secret is malformed');
  try {
    const decipher = createDecipheriv('aes-256-gcm', encryptionKey(keyring, sealed.keyVersion), sealed.iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(aad, 'utf8'));
    decipher.setAuthTag(sealed.tag);
    return Buffer.concat([decipher.update(sealed.ciphertext), decipher.final()]).toString('utf8');
  } catch {
    throw new SecretError('the sealed secret does not open (wrong key or associated data, or it was altered)');
  }
}

/** resealSecret opens a secret and seals it again under the current version (rotation). */
export function resealSecret(keyring: Keyring, sealed: SealedSecret, aad: string): SealedSecret {
  return sealSecret(keyring, openSecret(keyring, sealed, aad), aad);
}

/**
 * fingerprint is a short, non-reversible tag of a secret for display (`…1a2b3c4d`): the first 8 hex
 * of HMAC-SHA256 under a key derived from the current master key. Without the master key it
 * cannot be used to test guesses of the secret.
 */
export function fingerprint(keyring: Keyring, plaintext: string): string {
  const key = Buffer.from(hkdfSync('sha256', keyring.key(keyring.current), Buffer.alloc(0), 'chat/secrets/fingerprint/v1', 32));
  return `…${createHmac('sha256', key).update(plaintext, 'utf8').digest('hex').slice(0, 8)}`;
}
