import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { AppError } from '@chat/errors';
import type { ApiKeyEntry } from './config.js';

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest();

/**
 * ApiKeyAuth maps an API key to its owner. Keys are kept only as SHA-256 digests and compared in
 * constant time (every configured key is compared, whatever matches first).
 */
export class ApiKeyAuth {
  private readonly entries: Array<{ owner: string; digest: Buffer }>;

  constructor(keys: readonly ApiKeyEntry[]) {
    this.entries = keys.map((k) => ({ owner: k.owner, digest: sha256(k.key) }));
  }

  /** ownerOf returns the owner of a key, or undefined. */
  ownerOf(key: string): string | undefined {
    const digest = sha256(key);
    let owner: string | undefined;
    for (const e of this.entries) if (timingSafeEqual(e.digest, digest) && owner === undefined) owner = e.owner;
    return owner;
  }

  /** authenticate reads `Authorization: Bearer <key>` and returns the owner, or throws 401. */
  authenticate(header: string | undefined): string {
    const m = /^Bearer[ ]+(\S{1,1024})\s*$/i.exec(header ?? '');
    const owner = m ? this.ownerOf(m[1]!) : undefined;
    if (!owner) throw AppError.unauthenticated(m ? 'invalid API key' : 'missing API key: send Authorization: Bearer <key>');
    return owner;
  }
}

/** The owner of the embedded default's dev key. */
export const DEV_OWNER = 'dev';

/**
 * loadOrCreateDevKey returns the local dev API key stored in file, creating it (random, `dev-`
 * prefix, mode 0600) on first run. `created` tells whether this call made it.
 */
export async function loadOrCreateDevKey(file: string): Promise<{ key: string; created: boolean }> {
  const existing = await readKey(file);
  if (existing) return { key: existing, created: false };
  const key = `dev-${randomBytes(24).toString('base64url')}`;
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  try {
    await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    // Another process created it first: use theirs.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      const raced = await readKey(file);
      if (raced) return { key: raced, created: false };
    }
    throw err;
  }
  return { key, created: true };
}

async function readKey(file: string): Promise<string | undefined> {
  try {
    const key = (await readFile(file, 'utf8')).trim();
    if (/^dev-[A-Za-z0-9_-]{16,}$/.test(key)) return key;
    throw new Error(`${file} does not hold a dev API key; delete it to create a new one`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** What a valid ws_token proves. */
export interface WsTokenClaims {
  owner: string;
  session: string;
  /** Expiry, ms since epoch. */
  exp: number;
  nonce: string;
}

/** Why a ws_token was refused (never sent in detail to clients). */
export type WsTokenProblem = 'missing' | 'malformed' | 'forged' | 'expired' | 'reused' | 'other_session';

/**
 * WsTokens issues and checks WebSocket tokens: base64url(JSON claims) "." base64url(HMAC-SHA256),
 * valid for ttlMs, bound to one owner and session, and single-use (nonces are remembered until
 * they expire). With a random secret, tokens only work on the gateway process that issued them.
 */
export class WsTokens {
  private readonly secret: Buffer;
  private readonly used = new Map<string, number>(); // nonce -> exp

  constructor(
    secret: string | undefined,
    private readonly ttlMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {
    this.secret = secret ? Buffer.from(secret) : randomBytes(32);
  }

  issue(owner: string, session: string): { token: string; expiresAt: Date } {
    const claims: WsTokenClaims = { owner, session, exp: this.now() + this.ttlMs, nonce: randomBytes(16).toString('base64url') };
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return { token: `${payload}.${this.sign(payload)}`, expiresAt: new Date(claims.exp) };
  }

  /** verify checks a token for a session and consumes it; returns the claims or the problem. */
  verify(token: string | undefined | null, session: string): { ok: true; claims: WsTokenClaims } | { ok: false; problem: WsTokenProblem } {
    if (!token) return { ok: false, problem: 'missing' };
    const parts = token.split('.');
    if (parts.length !== 2 || token.length > 2048) return { ok: false, problem: 'malformed' };
    const [payload, signature] = parts as [string, string];
    const expected = Buffer.from(this.sign(payload));
    const given = Buffer.from(signature);
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, problem: 'forged' };
    let claims: WsTokenClaims;
    try {
      claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as WsTokenClaims;
    } catch {
      return { ok: false, problem: 'malformed' };
    }
    if (typeof claims?.owner !== 'string' || typeof claims.session !== 'string' || typeof claims.exp !== 'number' || typeof claims.nonce !== 'string') {
      return { ok: false, problem: 'malformed' };
    }
    const now = this.now();
    this.prune(now);
    if (claims.exp <= now) return { ok: false, problem: 'expired' };
    if (claims.session !== session) return { ok: false, problem: 'other_session' };
    if (this.used.has(claims.nonce)) return { ok: false, problem: 'reused' };
    this.used.set(claims.nonce, claims.exp);
    return { ok: true, claims };
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.secret).update(payload).digest('base64url');
  }

  private prune(now: number): void {
    for (const [nonce, exp] of this.used) if (exp <= now) this.used.delete(nonce);
  }
}
