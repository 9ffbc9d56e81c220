export { createFileOnce, generateKeySpec, Keyring, KeyringError, loadOrCreateKeyFile } from './keyring.js';
export { fingerprint, openSecret, resealSecret, sealSecret, SecretError, type SealedSecret } from './seal.js';
export { loadKeyring, secretsConfig } from './config.js';
