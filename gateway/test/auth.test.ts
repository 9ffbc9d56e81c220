import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '@chat/config';
import { InProcessBus } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { Runtime, type ModuleDef } from '@chat/runtime';
import { ApiKeyAuth, loadOrCreateDevKey, WsTokens } from '../src/auth.js';
import { gatewayConfig, parseListen } from '../src/config.js';
import { gatewayModule, type GatewayValue } from '../src/index.js';
import { captureLogs, Clock, tick } from './harness.js';
import { FakeKeyStore } from './fakes.js';

describe('gateway auth and configuration', () => {
  describe('API keys', () => {
    const auth = new ApiKeyAuth([
      { owner: 'alice', key: 'alice-key-123456' },
      { owner: 'bob', key: 'bob-key-1234567' },
    ]);

    it('maps a bearer key to its owner and key id', async () => {
      assert.deepEqual(await auth.authenticate('Bearer alice-key-123456'), { owner: 'alice', keyId: 'static:1' });
      assert.deepEqual(await auth.authenticate('bearer bob-key-1234567'), { owner: 'bob', keyId: 'static:2' });
    });

    it('refuses a missing, empty, unknown or prefixed key as unauthenticated', async () => {
      for (const header of [undefined, '', 'Bearer', 'Bearer ', 'Bearer alice-key-1234567', 'Token alice-key-123456', 'Bearer alice-key-123456 extra']) {
        await assert.rejects(auth.authenticate(header), (err: any) => err.reason === 'unauthenticated', String(header));
      }
    });
  });

  describe('ws tokens', () => {
    it('verify once for their session and owner', async () => {
      const tokens = new WsTokens('s'.repeat(32));
      const { token } = tokens.issue('alice', 'ses_1');
      const first = await tokens.verify(token, 'ses_1');
      assert.ok(first.ok);
      assert.equal(first.claims.owner, 'alice');
      assert.deepEqual(await tokens.verify(token, 'ses_1'), { ok: false, problem: 'reused' });
    });

    it('refuse missing, malformed, forged, expired and other-session tokens', async () => {
      const clock = new Clock();
      const tokens = new WsTokens('s'.repeat(32), 60_000, clock.now);
      assert.deepEqual(await tokens.verify(undefined, 'x'), { ok: false, problem: 'missing' });
      assert.deepEqual(await tokens.verify('nodot', 'x'), { ok: false, problem: 'malformed' });
      const foreign = new WsTokens('t'.repeat(32)).issue('alice', 'x').token;
      assert.deepEqual(await tokens.verify(foreign, 'x'), { ok: false, problem: 'forged' });
      const { token } = tokens.issue('alice', 'x');
      assert.deepEqual(await tokens.verify(token, 'y'), { ok: false, problem: 'other_session' });
      clock.t += 60_001;
      assert.deepEqual(await tokens.verify(token, 'x'), { ok: false, problem: 'expired' });
    });

    it('with a random secret only work on the instance that issued them', async () => {
      const a = new WsTokens(undefined);
      const b = new WsTokens(undefined);
      const { token } = a.issue('alice', 'x');
      assert.deepEqual(await b.verify(token, 'x'), { ok: false, problem: 'forged' });
      assert.ok((await a.verify(token, 'x')).ok);
    });

    it('are single use across gateway instances sharing a nonce store, and fail closed when it is down', async () => {
      const store = new FakeKeyStore();
      const secret = 's'.repeat(32);
      const a = new WsTokens(secret, 60_000, Date.now, store);
      const b = new WsTokens(secret, 60_000, Date.now, store);
      const { token } = a.issue('alice', 'x');
      assert.ok((await b.verify(token, 'x')).ok, 'the first use, on instance b');
      assert.deepEqual(await a.verify(token, 'x'), { ok: false, problem: 'reused' }, 'replayed on instance a');
      store.down = true;
      assert.deepEqual(await a.verify(a.issue('alice', 'x').token, 'x'), { ok: false, problem: 'unavailable' });
    });

    it('never live longer than 60 seconds', () => {
      assert.throws(() => new WsTokens('s'.repeat(32), 60_001), /60 s/);
    });
  });

  describe('dev key', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'gateway-devkey-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('is created once with a dev- prefix and mode 0600, then reused', async () => {
      const file = join(dir, 'nested', 'dev-api-key');
      const first = await loadOrCreateDevKey(file);
      assert.equal(first.created, true);
      assert.match(first.key, /^dev-[A-Za-z0-9_-]{16,}$/);
      assert.equal((await stat(file)).mode & 0o777, 0o600);
      assert.equal((await readFile(file, 'utf8')).trim(), first.key);
      const second = await loadOrCreateDevKey(file);
      assert.deepEqual(second, { key: first.key, created: false });
    });

    it('refuses a file that does not hold a dev key', async () => {
      const file = join(dir, 'dev-api-key');
      await writeFile(file, 'hello');
      await assert.rejects(loadOrCreateDevKey(file), /does not hold a dev API key/);
    });
  });

  describe('configuration', () => {
    it('has defaults for every variable', () => {
      const cfg = loadConfig([gatewayConfig], {}).get(gatewayConfig)!;
      assert.equal(cfg.GATEWAY_HTTP_LISTEN, '127.0.0.1:8080');
      assert.equal(cfg.API_KEYS, undefined);
      assert.equal(cfg.WS_TOKEN_SECRET, undefined);
      assert.equal(cfg.DEV_API_KEY_FILE, undefined);
      assert.equal(cfg.DATA_DIR, '.data');
      assert.equal(cfg.MAX_BODY_BYTES, 1024 * 1024);
      assert.equal(cfg.API_KEY_CACHE_TTL_MS, 30_000);
      assert.equal(cfg.RATE_LIMIT_KEY_PER_MINUTE, 600);
      assert.equal(cfg.RATE_LIMIT_KEY_BURST, 100);
      assert.equal(cfg.RATE_LIMIT_SESSION_PER_MINUTE, 120);
      assert.equal(cfg.RATE_LIMIT_SESSION_BURST, 40);
      assert.equal(cfg.MAX_STREAMS_PER_OWNER, 20);
      assert.equal(cfg.WS_ALLOWED_ORIGINS, undefined);
    });

    it('parses WS_ALLOWED_ORIGINS and rejects entries that are not origins', () => {
      const cfg = loadConfig([gatewayConfig], { WS_ALLOWED_ORIGINS: 'https://App.example.com, http://localhost:3000' }).get(gatewayConfig)!;
      assert.deepEqual(cfg.WS_ALLOWED_ORIGINS, ['https://app.example.com', 'http://localhost:3000']);
      assert.deepEqual(loadConfig([gatewayConfig], { WS_ALLOWED_ORIGINS: '*' }).get(gatewayConfig)!.WS_ALLOWED_ORIGINS, ['*']);
      for (const bad of ['https://app.example.com/path', 'app.example.com', 'ftp://x']) {
        assert.throws(() => loadConfig([gatewayConfig], { WS_ALLOWED_ORIGINS: bad }), (e: unknown) => e instanceof ConfigError && e.problems[0]!.variable === 'WS_ALLOWED_ORIGINS', bad);
      }
      assert.throws(() => loadConfig([gatewayConfig], { RATE_LIMIT_KEY_PER_MINUTE: '0' }), ConfigError);
    });

    it('parses API_KEYS as owner:key pairs', () => {
      const cfg = loadConfig([gatewayConfig], { API_KEYS: 'alice:alice-key-1, bob:bob-key-22' }).get(gatewayConfig)!;
      assert.deepEqual(cfg.API_KEYS, [
        { owner: 'alice', key: 'alice-key-1' },
        { owner: 'bob', key: 'bob-key-22' },
      ]);
    });

    it('rejects a malformed API_KEYS without echoing the keys', () => {
      assert.throws(
        () => loadConfig([gatewayConfig], { API_KEYS: 'alice-without-owner-secret' }),
        (err: unknown) => err instanceof ConfigError && err.problems[0]!.variable === 'API_KEYS' && !err.message.includes('alice-without-owner-secret'),
      );
    });

    it('rejects a short WS_TOKEN_SECRET and a bad listen address', () => {
      assert.throws(() => loadConfig([gatewayConfig], { WS_TOKEN_SECRET: 'short' }), ConfigError);
      assert.throws(() => loadConfig([gatewayConfig], { GATEWAY_HTTP_LISTEN: 'nope' }), ConfigError);
    });

    it('splits listen addresses including IPv6', () => {
      assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
      assert.deepEqual(parseListen('[::1]:8080'), { host: '::1', port: 8080 });
    });
  });

  describe('gateway module', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(join(tmpdir(), 'gateway-module-'));
    });
    afterEach(async () => {
      closeClients();
      await rm(dir, { recursive: true, force: true });
    });

    const busModule: ModuleDef<InProcessBus> = { name: 'bus', init: async () => ({ value: new InProcessBus() }) };
    const env = (extra: Record<string, string>) => ({
      GATEWAY_HTTP_LISTEN: '127.0.0.1:0',
      PERSONA_GRPC_ADDR: '127.0.0.1:1',
      SESSION_GRPC_ADDR: '127.0.0.1:1',
      RAG_GRPC_ADDR: '127.0.0.1:1',
      SCHEDULER_GRPC_ADDR: '127.0.0.1:1',
      ...extra,
    });

    it('starts on a free port with a first-run dev key that it never logs, and stops', async () => {
      const file = join(dir, 'dev-api-key');
      const logs = captureLogs();
      const runtime = new Runtime([busModule, gatewayModule as ModuleDef], ['gateway'], { env: env({ DEV_API_KEY_FILE: file }) });
      await runtime.start();
      try {
        const { url } = runtime.get<GatewayValue>('gateway');
        assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
        assert.equal((await fetch(`${url}/readyz`)).status, 200);
        const key = (await readFile(file, 'utf8')).trim();
        // The key store (persona service) is unreachable: a key that is not the dev key cannot be
        // checked, so it answers 503, never 200; the dev key itself is checked in memory.
        const res = await fetch(`${url}/api/personas/p1`, { headers: { authorization: 'Bearer wrong-key-123' } });
        assert.equal(res.status, 503);
        assert.equal((await fetch(`${url}/api/personas/p1`)).status, 401);
        await tick();
        assert.equal(logs.lines.filter((l) => l.includes(key)).length, 0, 'the key never appears in logs');
        assert.equal(logs.lines.filter((l) => l.includes(file) && l.includes('created')).length, 1, 'the first start names the key file');
      } finally {
        await runtime.stop();
        logs.stop();
      }
      // A second start reuses the key and does not print it.
      const again = captureLogs();
      const runtime2 = new Runtime([busModule, gatewayModule as ModuleDef], ['gateway'], { env: env({ DEV_API_KEY_FILE: file }) });
      await runtime2.start();
      await runtime2.stop();
      await tick();
      again.stop();
      const key = (await readFile(file, 'utf8')).trim();
      assert.ok(!again.lines.join('\n').includes(key));
    });

    it('uses API_KEYS when set and creates no dev key', async () => {
      const file = join(dir, 'dev-api-key');
      const runtime = new Runtime([busModule, gatewayModule as ModuleDef], ['gateway'], { env: env({ DEV_API_KEY_FILE: file, API_KEYS: 'carol:carol-key-123' }) });
      await runtime.start();
      try {
        const { url } = runtime.get<GatewayValue>('gateway');
        // The persona service is unreachable: an authenticated call gets past auth and answers 503.
        const res = await fetch(`${url}/api/personas`, { headers: { authorization: 'Bearer carol-key-123' } });
        assert.notEqual(res.status, 401);
        const body = (await res.json()) as { error?: { code: string } };
        assert.ok(body.error && typeof body.error.code === 'string');
        await assert.rejects(stat(file));
      } finally {
        await runtime.stop();
      }
    });
  });
});
