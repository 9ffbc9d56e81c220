import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

/** A key version label: `v` and a number, e.g. `v1`. */
const VERSION = /^v[0-9]{1,6}$/;

/** KeyringError reports bad key material or an unknown version; it never carries key bytes. */
export class KeyringError extends Error {
  override readonly name = 'KeyringError';
}

/** versionNumber orders versions: v2 after v10 would be wrong as text. */
function versionNumber(v: string): number {
  return Number(v.slice(1));
}

/**
 * Keyring maps key versions to 32-byte AES-256 keys and names the current version (the one new
 * secrets are sealed with). Older versions stay to open what they sealed until rotation is done.
 */
export class Keyring {
  private readonly keys: ReadonlyMap<string, Buffer>;
  readonly current: string;

  constructor(keys: ReadonlyMap<string, Buffer> | Record<string, Buffer>, current?: string) {
    const map = new Map(keys instanceof Map ? keys : Object.entries(keys));
    if (map.size === 0) throw new KeyringError('the keyring holds no key');
    for (const [version, key] of map) {
      if (!VERSION.test(version)) throw new KeyringError(`key version ${JSON.stringify(version)} must look like v1, v2, …`);
      if (key.length !== 32) throw new KeyringError(`key ${version} must be 32 bytes (got ${key.length})`);
    }
    const chosen = current ?? [...map.keys()].sort((a, b) => versionNumber(b) - versionNumber(a))[0]!;
    if (!map.has(chosen)) throw new KeyringError(`the current key version ${chosen} is not in the keyring (have ${[...map.keys()].join(', ')})`);
    this.keys = map;
    this.current = chosen;
  }

  /**
   * parse reads `v1:<base64 32 bytes>,v2:<base64>`; current defaults to the highest version.
   * Problems name the entry, never its content.
   */
  static parse(spec: string, current?: string): Keyring {
    const keys = new Map<string, Buffer>();
    const entries = spec.split(',').map((s) => s.trim()).filter(Boolean);
    entries.forEach((entry, i) => {
      const at = entry.indexOf(':');
      const version = at > 0 ? entry.slice(0, at).trim() : '';
      const b64 = at > 0 ? entry.slice(at + 1).trim() : '';
      if (!VERSION.test(version)) throw new KeyringError(`entry ${i + 1} must be v<n>:<base64 of 32 bytes>`);
      if (keys.has(version)) throw new KeyringError(`key version ${version} is listed twice`);
      const key = /^[A-Za-z0-9+/_-]+={0,2}$/.test(b64) ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
      if (key.length !== 32) throw new KeyringError(`key ${version} must be the base64 of exactly 32 bytes`);
      keys.set(version, key);
    });
    return new Keyring(keys, current);
  }

  /** has tells whether a version's key is present. */
  has(version: string): boolean {
    return this.keys.has(version);
  }

  /** key returns a version's key; unknown versions throw. */
  key(version: string): Buffer {
    const key = this.keys.get(version);
    if (!key) throw new KeyringError(`no master key of version ${JSON.stringify(version)} is configured`);
    return key;
  }

  /** versions lists the versions held, oldest first. */
  get versions(): string[] {
    return [...this.keys.keys()].sort((a, b) => versionNumber(a) - versionNumber(b));
  }

  /** withCurrent is the same keys with another current version. */
  withCurrent(version: string): Keyring {
    return new Keyring(this.keys, version);
  }
}

/** generateKeySpec makes a fresh random `v1:<base64>` keyring spec. */
export function generateKeySpec(version = 'v1'): string {
  return `${version}:${randomBytes(32).toString('base64')}`;
}

/**
 * loadOrCreateKeyFile returns the keyring spec stored in file, creating it (one random v1 key,
 * mode 0600) on first use. Racing creators agree: the loser reads the winner's file.
 */
export async function loadOrCreateKeyFile(file: string): Promise<{ spec: string; created: boolean }> {
  const existing = await readSpec(file);
  if (existing) return { spec: existing, created: false };
  const spec = generateKeySpec();
  if (await createFileOnce(file, `${spec}\n`)) return { spec, created: true };
  const raced = await readSpec(file);
  if (!raced) throw new KeyringError(`${file} vanished while it was being created`);
  return { spec: raced, created: false };
}

/**
 * createFileOnce writes a new file (mode 0600, its folder 0700) whole or not at all: the content
 * goes to a temporary file that is then hard-linked to its name, which fails if the name exists.
 * So a racing reader never sees it empty or half written. False: another writer made it first.
 */
export async function createFileOnce(file: string, content: string): Promise<boolean> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(tmp, content, { mode: 0o600, flag: 'wx' });
  try {
    await link(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

async function readSpec(file: string): Promise<string | undefined> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  // A writer that crashed between create and write leaves an empty file: refuse it loudly.
  if (!text) throw new KeyringError(`${file} is empty; restore it from a backup (secrets sealed with it cannot be opened otherwise)`);
  try {
    Keyring.parse(text);
  } catch (err) {
    throw new KeyringError(`${file} does not hold master keys (${(err as Error).message})`);
  }
  return text;
}
