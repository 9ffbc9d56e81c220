import { defineConfig, env, z } from '@chat/config';

/** An `owner:key` pair of API_KEYS. */
export interface ApiKeyEntry {
  owner: string;
  key: string;
}

const OWNER = /^[A-Za-z0-9_.@-]{1,100}$/;

/** apiKeyList parses `owner:key,owner2:key2`; keys are at least 8 characters of [A-Za-z0-9._~+/=-]. */
const apiKeyList = () =>
  z.string().transform((value, ctx): ApiKeyEntry[] => {
    const out: ApiKeyEntry[] = [];
    for (const raw of value.split(',')) {
      const item = raw.trim();
      if (!item) continue;
      const i = item.indexOf(':');
      const owner = i > 0 ? item.slice(0, i).trim() : '';
      const key = i > 0 ? item.slice(i + 1).trim() : '';
      // Never echo the key itself in the problem text.
      if (!OWNER.test(owner) || !/^[A-Za-z0-9._~+/=-]{8,512}$/.test(key)) {
        ctx.addIssue({ code: 'custom', message: `entry ${out.length + 1} must be owner:key (owner [A-Za-z0-9_.@-], key at least 8 characters)` });
        return z.NEVER;
      }
      out.push({ owner, key });
    }
    if (out.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'must list at least one owner:key' });
      return z.NEVER;
    }
    return out;
  });

/** originList parses `scheme://host[:port]` entries separated by commas, or `*`. */
const originList = () =>
  z.string().transform((value, ctx): string[] => {
    const out = value.split(',').map((o) => o.trim()).filter(Boolean);
    for (const o of out) {
      if (o !== '*' && !/^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?$|^https?:\/\/\[[0-9a-fA-F:.]+\](:\d{1,5})?$/.test(o)) {
        ctx.addIssue({ code: 'custom', message: `"${o}" must be an origin like https://app.example.com (scheme://host[:port], no path) or *` });
        return z.NEVER;
      }
    }
    if (out.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'must list at least one origin' });
      return z.NEVER;
    }
    return out.map((o) => o.toLowerCase());
  });

/** The gateway's configuration slice. */
export const gatewayConfig = defineConfig({
  /** Where the public HTTP + WebSocket API listens; port 0 picks a free port. */
  GATEWAY_HTTP_LISTEN: env.address().default('127.0.0.1:8080'),
  /** Production API keys, `owner:key,owner:key`. Unset: a local dev key is created (see DEV_API_KEY_FILE). */
  API_KEYS: apiKeyList().optional(),
  /**
   * Secret that signs WebSocket tokens. Unset: random per process, so a token only works on the
   * gateway instance that issued it (set it to the same value on every replica behind a balancer).
   */
  WS_TOKEN_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
  /** Where the embedded default keeps its generated dev API key (mode 0600, reused across restarts); default DATA_DIR/dev-api-key. */
  DEV_API_KEY_FILE: z.string().optional(),
  /** The project data directory (shared with the embedded database and vector store). */
  DATA_DIR: z.string().default('.data'),
  /** Largest accepted request body; larger bodies answer 413 too_large. */
  MAX_BODY_BYTES: env.positiveInt().default(1024 * 1024),
  /** How long a key confirmed by the key store is trusted without asking it again (revocation delay on other replicas). */
  API_KEY_CACHE_TTL_MS: env.millis().default(30_000),
  /** Per-API-key token bucket: requests per minute, and the burst. */
  RATE_LIMIT_KEY_PER_MINUTE: env.positiveInt().default(600),
  RATE_LIMIT_KEY_BURST: env.positiveInt().default(100),
  /** Per-session token bucket (message sends over REST and every WebSocket frame): per minute, and the burst. */
  RATE_LIMIT_SESSION_PER_MINUTE: env.positiveInt().default(120),
  RATE_LIMIT_SESSION_BURST: env.positiveInt().default(40),
  /** Concurrent streams (WebSocket connections, streamed completions) one owner may hold on one gateway. */
  MAX_STREAMS_PER_OWNER: env.positiveInt().default(20),
  /**
   * Origins allowed to open WebSockets (`https://app.example.com,http://localhost:3000`; `*` = any).
   * Unset: any Origin (embedded default). Requests without an Origin header (non-browser clients) are always allowed.
   */
  WS_ALLOWED_ORIGINS: originList().optional(),
  /** Owners allowed to use /api/admin (dead letters: list, replay), `owner,owner`. Unset: nobody. */
  ADMIN_OWNERS: z
    .string()
    .transform((v) => v.split(',').map((o) => o.trim()).filter(Boolean))
    .refine((owners) => owners.length > 0 && owners.every((o) => OWNER.test(o)), 'must be a comma-separated list of owners ([A-Za-z0-9_.@-], at most 100 each)')
    .optional(),
});

/** parseListen splits `host:port` (IPv6 in brackets) into its parts. */
export function parseListen(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  let host = address.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(i + 1)) };
}
