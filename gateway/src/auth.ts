import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { personaV1 } from '@chat/contracts';
import { AppError, Code, isAppError } from '@chat/errors';
import { unary } from '@chat/grpc';
import { createFileOnce } from '@chat/secrets';
import * as grpc from '@grpc/grpc-js';
import type { ApiKeyEntry } from './config.js';

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest();

/**
 * KeyStore is where API keys (digests with an owner) and used ws_token nonces live, shared by every
 * gateway replica: the persona service's chat.persona.v1.ApiKeyService (GrpcKeyStore), or a fake in
 * tests. Unknown digests and foreign ids answer NOT_FOUND.
 */
export interface KeyStore {
  authenticateApiKey(req: { digest: Buffer }): Promise<{ keyId: string; ownerId: string }>;
  createApiKey(req: { ownerId: string; name: string }): Promise<personaV1.CreateApiKeyResponse>;
  listApiKeys(req: { ownerId: string }): Promise<personaV1.ListApiKeysResponse>;
  revokeApiKey(req: { ownerId: string; id: string }): Promise<personaV1.RevokeApiKeyResponse>;
  consumeNonce(req: { nonce: string; expiresAt: Date }): Promise<{ firstUse: boolean }>;
}

const DEADLINE_MS = 5_000;

/**
 * GrpcKeyStore calls chat.persona.v1.ApiKeyService of the persona service. It owns its channel:
 * @chat/grpc's getClient caches one client per constructor name and address, and every ts-proto
 * client constructor has the same name, so on the persona service's address it would hand back
 * the PersonaService client.
 */
export class GrpcKeyStore implements KeyStore {
  private readonly c: personaV1.ApiKeyServiceClient;
  constructor(address: string) {
    this.c = new personaV1.ApiKeyServiceClient(address, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.enable_retries': 0,
    });
  }
  /** close closes the channel. */
  close(): void {
    this.c.close();
  }
  authenticateApiKey(req: { digest: Buffer }) {
    return unary('persona service', this.c.authenticateApiKey.bind(this.c), personaV1.AuthenticateApiKeyRequest.fromPartial(req), DEADLINE_MS);
  }
  createApiKey(req: { ownerId: string; name: string }) {
    return unary('persona service', this.c.createApiKey.bind(this.c), personaV1.CreateApiKeyRequest.fromPartial(req), DEADLINE_MS);
  }
  listApiKeys(req: { ownerId: string }) {
    return unary('persona service', this.c.listApiKeys.bind(this.c), personaV1.ListApiKeysRequest.fromPartial(req), DEADLINE_MS);
  }
  revokeApiKey(req: { ownerId: string; id: string }) {
    return unary('persona service', this.c.revokeApiKey.bind(this.c), personaV1.RevokeApiKeyRequest.fromPartial(req), DEADLINE_MS);
  }
  consumeNonce(req: { nonce: string; expiresAt: Date }) {
    return unary('persona service', this.c.consumeNonce.bind(this.c), personaV1.ConsumeNonceRequest.fromPartial(req), DEADLINE_MS);
  }
}

/** Who a request is: the owner and the id of the key it used (`static:<n>` for API_KEYS / the dev key). */
export interface Principal {
  owner: string;
  keyId: string;
}

export interface ApiKeyAuthOptions {
  /** The shared key store; without it only the configured keys work. */
  store?: KeyStore;
  /** How long a key the store confirmed is trusted without asking again (default 30 s). */
  cacheTtlMs?: number;
  now?: () => number;
}

/** How long an unknown digest is remembered as unknown (bounds store lookups by a flood of bad keys). */
const NEGATIVE_TTL_MS = 2_000;
const CACHE_MAX = 10_000;

/**
 * ApiKeyAuth maps an API key to its owner. Configured keys (API_KEYS, the dev key) are kept only as
 * SHA-256 digests and compared in constant time (every one is compared, whatever matches first);
 * other keys are looked up by digest in the KeyStore, with a short positive cache (a key revoked
 * through this gateway is dropped from its cache at once; on other replicas within cacheTtlMs).
 */
export class ApiKeyAuth {
  private readonly entries: Array<{ owner: string; digest: Buffer; keyId: string }>;
  private readonly cache = new Map<string, { principal?: Principal; until: number }>();
  private readonly now: () => number;

  constructor(
    keys: readonly ApiKeyEntry[],
    private readonly options: ApiKeyAuthOptions = {},
  ) {
    this.entries = keys.map((k, i) => ({ owner: k.owner, digest: sha256(k.key), keyId: `static:${i + 1}` }));
    this.now = options.now ?? Date.now;
  }

  /** The shared key store, when there is one. */
  get store(): KeyStore | undefined {
    return this.options.store;
  }

  /** configuredOwnerOf returns the principal of a configured key, or undefined. */
  private configured(digest: Buffer): Principal | undefined {
    let found: Principal | undefined;
    for (const e of this.entries) if (timingSafeEqual(e.digest, digest) && found === undefined) found = { owner: e.owner, keyId: e.keyId };
    return found;
  }

  /** principalOf returns who a key is, or undefined for an unknown or revoked key. */
  async principalOf(key: string): Promise<Principal | undefined> {
    const digest = sha256(key);
    const configured = this.configured(digest);
    if (configured || !this.options.store) return configured;
    const hex = digest.toString('hex');
    const now = this.now();
    const hit = this.cache.get(hex);
    if (hit && hit.until > now) return hit.principal;
    let principal: Principal | undefined;
    try {
      const res = await this.options.store.authenticateApiKey({ digest });
      principal = { owner: res.ownerId, keyId: res.keyId };
    } catch (err) {
      if (!(isAppError(err) && err.code === Code.NotFound)) throw AppError.unavailable('cannot check the API key right now; retry shortly', err);
    }
    if (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(hex, { principal, until: now + (principal ? (this.options.cacheTtlMs ?? 30_000) : NEGATIVE_TTL_MS) });
    return principal;
  }

  /** forget drops a revoked key from this instance's cache. */
  forget(keyId: string): void {
    for (const [hex, e] of this.cache) if (e.principal?.keyId === keyId) this.cache.delete(hex);
  }

  /** authenticate reads `Authorization: Bearer <key>` and returns who it is, or throws 401 (503 when the store is down). */
  async authenticate(header: string | undefined): Promise<Principal> {
    const m = /^Bearer[ ]+(\S{1,1024})\s*$/i.exec(header ?? '');
    const principal = m ? await this.principalOf(m[1]!) : undefined;
    if (!principal) throw AppError.unauthenticated(m ? 'invalid API key' : 'missing API key: send Authorization: Bearer <key>');
    return principal;
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
  if (await createFileOnce(file, `${key}\n`)) return { key, created: true };
  // Another process created it first: use theirs.
  const raced = await readKey(file);
  if (!raced) throw new Error(`${file} vanished while it was being created`);
  return { key: raced, created: false };
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
export type WsTokenProblem = 'missing' | 'malformed' | 'forged' | 'expired' | 'reused' | 'other_session' | 'unavailable';

/**
 * WsTokens issues and checks WebSocket tokens: base64url(JSON claims) "." base64url(HMAC-SHA256),
 * valid for ttlMs (at most 60 s), bound to one owner and session, and single-use: the nonce is
 * recorded in the KeyStore (shared by every replica, so a token cannot be replayed on another
 * gateway) and in a local set. With a random secret, tokens only work on the issuing process.
 */
export class WsTokens {
  private readonly secret: Buffer;
  private readonly used = new Map<string, number>(); // nonce -> exp

  constructor(
    secret: string | undefined,
    private readonly ttlMs = 60_000,
    private readonly now: () => number = Date.now,
    private readonly store?: Pick<KeyStore, 'consumeNonce'>,
  ) {
    if (!(ttlMs > 0 && ttlMs <= 60_000)) throw new Error('a ws_token lives at most 60 s');
    this.secret = secret ? Buffer.from(secret) : randomBytes(32);
  }

  issue(owner: string, session: string): { token: string; expiresAt: Date } {
    const claims: WsTokenClaims = { owner, session, exp: this.now() + this.ttlMs, nonce: randomBytes(16).toString('base64url') };
    const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
    return { token: `${payload}.${this.sign(payload)}`, expiresAt: new Date(claims.exp) };
  }

  /** verify checks a token for a session and consumes it; returns the claims or the problem. */
  async verify(token: string | undefined | null, session: string): Promise<{ ok: true; claims: WsTokenClaims } | { ok: false; problem: WsTokenProblem }> {
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
    if (this.store) {
      try {
        const { firstUse } = await this.store.consumeNonce({ nonce: claims.nonce, expiresAt: new Date(claims.exp) });
        if (!firstUse) return { ok: false, problem: 'reused' };
      } catch {
        // Fail closed: without the shared record the token might be a replay. It stays consumed here.
        return { ok: false, problem: 'unavailable' };
      }
    }
    return { ok: true, claims };
  }

  private sign(payload: string): string {
    return createHmac('sha256', this.secret).update(payload).digest('base64url');
  }

  private prune(now: number): void {
    for (const [nonce, exp] of this.used) if (exp <= now) this.used.delete(nonce);
  }
}
