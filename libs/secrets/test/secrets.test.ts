import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '@chat/config';
import { fingerprint, generateKeySpec, Keyring, KeyringError, loadKeyring, loadOrCreateKeyFile, openSecret, resealSecret, sealSecret, SecretError, secretsConfig } from '../src/index.js';

const b64 = () => randomBytes(32).toString('base64');

describe('@chat/secrets', () => {
  const k1 = b64();
  const k2 = b64();
  const ring = Keyring.parse(`v1:${k1}`);
  const aad = randomUUID();

  describe('Keyring', () => {
    it('parses versions and picks the highest as current by default', () => {
      const r = Keyring.parse(`v2:${k2}, v10:${b64()},v1:${k1}`);
      assert.equal(r.current, 'v10');
      assert.deepEqual(r.versions, ['v1', 'v2', 'v10']);
      assert.equal(Keyring.parse(`v1:${k1},v2:${k2}`, 'v1').current, 'v1');
    });

    it('refuses bad specs without echoing key material', () => {
      const secret = 'c2hvcnQta2V5LW5vdC0zMi1ieXRlcw==';
      for (const spec of [`v1:${secret}`, `x1:${k1}`, `v1:${k1},v1:${k2}`, '', `v1`]) {
        assert.throws(() => Keyring.parse(spec), (err: Error) => err instanceof KeyringError && !err.message.includes(secret) && !err.message.includes(k1));
      }
      assert.throws(() => Keyring.parse(`v1:${k1}`, 'v2'), /v2 is not in the keyring/);
    });
  });

  describe('seal and open', () => {
    it('round-trips with a random iv per seal', () => {
      const a = sealSecret(ring, 'sk-test-123', aad);
      const b = sealSecret(ring, 'sk-test-123', aad);
      assert.equal(a.keyVersion, 'v1');
      assert.equal(a.iv.length, 12);
      assert.equal(a.tag.length, 16);
      assert.notDeepEqual(a.iv, b.iv);
      assert.notDeepEqual(a.ciphertext, b.ciphertext);
      assert.ok(!a.ciphertext.toString('latin1').includes('sk-test'));
      assert.equal(openSecret(ring, a, aad), 'sk-test-123');
      assert.equal(openSecret(ring, sealSecret(ring, '', aad), aad), '');
    });

    it('fails with another associated data (a sealed value moved to another row)', () => {
      const s = sealSecret(ring, 'sk-test-123', aad);
      assert.throws(() => openSecret(ring, s, randomUUID()), SecretError);
    });

    it('fails when the tag, ciphertext or iv was tampered with', () => {
      const s = sealSecret(ring, 'sk-test-123', aad);
      const flip = (b: Buffer) => {
        const c = Buffer.from(b);
        c[0] = c[0]! ^ 1;
        return c;
      };
      assert.throws(() => openSecret(ring, { ...s, tag: flip(s.tag) }, aad), SecretError);
      assert.throws(() => openSecret(ring, { ...s, ciphertext: flip(s.ciphertext) }, aad), SecretError);
      assert.throws(() => openSecret(ring, { ...s, iv: flip(s.iv) }, aad), SecretError);
      assert.throws(() => openSecret(ring, { ...s, tag: s.tag.subarray(0, 8) }, aad), SecretError);
    });

    it('fails with an unknown key version or another key of the same version', () => {
      const s = sealSecret(ring, 'sk-test-123', aad);
      assert.throws(() => openSecret(ring, { ...s, keyVersion: 'v9' }, aad), (err: Error) => err instanceof SecretError && /v9/.test(err.message));
      assert.throws(() => openSecret(Keyring.parse(`v1:${k2}`), s, aad), SecretError);
    });

    it('rotation: a v1 secret opens with a v1+v2 ring and reseals onto v2, which v1 alone cannot open', () => {
      const old = sealSecret(ring, 'sk-rotate-me', aad);
      const both = Keyring.parse(`v1:${k1},v2:${k2}`);
      assert.equal(both.current, 'v2');
      assert.equal(openSecret(both, old, aad), 'sk-rotate-me');
      const fresh = resealSecret(both, old, aad);
      assert.equal(fresh.keyVersion, 'v2');
      assert.equal(openSecret(both, fresh, aad), 'sk-rotate-me');
      assert.equal(openSecret(Keyring.parse(`v2:${k2}`), fresh, aad), 'sk-rotate-me', 'v1 can be retired after rotation');
      assert.throws(() => openSecret(ring, fresh, aad), SecretError);
    });
  });

  describe('fingerprint', () => {
    it('is short, stable under one key, differs per secret and per master key, and reveals no part of the secret', () => {
      const f = fingerprint(ring, 'sk-abcdefgh12345678');
      assert.match(f, /^…[0-9a-f]{8}$/);
      assert.equal(fingerprint(ring, 'sk-abcdefgh12345678'), f);
      assert.notEqual(fingerprint(ring, 'sk-abcdefgh12345679'), f);
      assert.notEqual(fingerprint(Keyring.parse(`v1:${k2}`), 'sk-abcdefgh12345678'), f);
      assert.ok(!'sk-abcdefgh12345678'.includes(f.slice(1, 5)));
    });
  });

  describe('configuration and the embedded key file', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(join(tmpdir(), 'secrets-'));
    });
    afterEach(() => rmSync(dir, { recursive: true, force: true }));

    it('creates a random key file once (mode 0600) and reuses it', async () => {
      const file = join(dir, 'sub', 'master-keys');
      const a = await loadOrCreateKeyFile(file);
      assert.equal(a.created, true);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.match(readFileSync(file, 'utf8'), /^v1:[A-Za-z0-9+/]+={0,2}\n$/);
      const b = await loadOrCreateKeyFile(file);
      assert.deepEqual(b, { spec: a.spec, created: false });
    });

    it('gives every racing creator the same key, never an empty or half-written file', async () => {
      // Two processes on one DATA_DIR (persona and rag) create the file at once at first start.
      for (let round = 0; round < 5; round++) {
        const file = join(dir, `race-${round}`, 'master-keys');
        const results = await Promise.all(Array.from({ length: 12 }, () => loadOrCreateKeyFile(file)));
        assert.equal(results.filter((r) => r.created).length, 1);
        assert.equal(new Set(results.map((r) => r.spec)).size, 1);
        assert.equal(readFileSync(file, 'utf8').trim(), results[0]!.spec);
        assert.deepEqual(readdirSync(join(dir, `race-${round}`)), ['master-keys'], 'no temporary file is left behind');
      }
    });

    it('loadKeyring uses MASTER_KEYS, else the key file, and never logs key material', async () => {
      const lines: string[] = [];
      const logger = { info: (m: string) => lines.push(m), warn: (m: string) => lines.push(m) };
      const spec = `v1:${k1},v2:${k2}`;
      const cfg = loadConfig([secretsConfig], { MASTER_KEYS: spec, MASTER_KEY_VERSION: 'v1', DATA_DIR: dir }).get(secretsConfig)!;
      const r = await loadKeyring(cfg as never, logger);
      assert.equal(r.current, 'v1');
      const fileCfg = loadConfig([secretsConfig], { DATA_DIR: dir }).get(secretsConfig)!;
      const r1 = await loadKeyring(fileCfg as never, logger);
      const r2 = await loadKeyring(fileCfg as never, logger);
      assert.equal(r1.current, 'v1');
      assert.deepEqual(r1.key('v1'), r2.key('v1'));
      const fileKey = readFileSync(join(dir, 'master-keys'), 'utf8').trim().slice(3);
      assert.ok(lines.some((l) => l.includes('master-keys')));
      for (const l of lines) for (const k of [k1, k2, fileKey]) assert.ok(!l.includes(k));
    });

    it('rejects a bad MASTER_KEYS naming the variable but not the value', () => {
      const bad = `v1:${Buffer.from('too short').toString('base64')}`;
      assert.throws(
        () => loadConfig([secretsConfig], { MASTER_KEYS: bad }),
        (err: Error) => err instanceof ConfigError && err.message.includes('MASTER_KEYS') && !err.message.includes(bad.slice(3)),
      );
      assert.throws(() => loadConfig([secretsConfig], { MASTER_KEYS: generateKeySpec(), MASTER_KEY_VERSION: 'one' }), /MASTER_KEY_VERSION/);
    });

    it('rejects a MASTER_KEY_VERSION that names no key', async () => {
      const cfg = loadConfig([secretsConfig], { MASTER_KEYS: `v1:${k1}`, MASTER_KEY_VERSION: 'v2' }).get(secretsConfig)!;
      await assert.rejects(loadKeyring(cfg as never), /MASTER_KEY_VERSION/);
    });
  });
});
