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
});

/** parseListen splits `host:port` (IPv6 in brackets) into its parts. */
export function parseListen(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  let host = address.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(i + 1)) };
}
