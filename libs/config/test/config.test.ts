import assert from 'node:assert/strict';
import { ConfigError, defineConfig, env, loadConfig, z } from '../src/index.js';

describe('loadConfig', () => {
  const slice = defineConfig({
    PORT: env.port().default(8080),
    BROKERS: env.addressList().optional(),
    DATABASE_URL: env.postgresUrl(),
    DEBUG: env.bool().default(false),
    NAME: z.string().default('x'),
  });

  it('parses and types values, applying defaults', () => {
    const cfg = loadConfig([slice], { DATABASE_URL: 'postgres://u:p@h:5432/db', BROKERS: 'a:1, b:2', DEBUG: 'yes' }).get(slice)!;
    assert.equal(cfg.PORT, 8080);
    assert.deepEqual(cfg.BROKERS, ['a:1', 'b:2']);
    assert.equal(cfg.DEBUG, true);
    assert.equal(cfg.NAME, 'x');
  });

  it('treats an empty value as unset', () => {
    const cfg = loadConfig([slice], { DATABASE_URL: 'postgres://h/db', PORT: '  ' }).get(slice)!;
    assert.equal(cfg.PORT, 8080);
  });

  it('names a missing required variable', () => {
    assert.throws(
      () => loadConfig([slice], {}),
      (err: unknown) => err instanceof ConfigError && /DATABASE_URL: is required/.test(err.message),
    );
  });

  it('names every wrong variable and says what is wrong, at once', () => {
    assert.throws(
      () => loadConfig([slice], { DATABASE_URL: 'mysql://x', PORT: '99999', BROKERS: 'nohost' }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const vars = err.problems.map((p) => p.variable).sort();
        assert.deepEqual(vars, ['BROKERS', 'DATABASE_URL', 'PORT']);
        assert.match(err.message, /PORT: must be 0\.\.65535/);
        assert.match(err.message, /BROKERS: must be a comma-separated list of host:port/);
        return true;
      },
    );
  });

  it('does not echo the values of secret variables', () => {
    const secret = defineConfig({ LLM_API_KEY: z.string().min(20, 'must be at least 20 characters') });
    assert.throws(
      () => loadConfig([secret], { LLM_API_KEY: 'sk-short-secret' }),
      (err: unknown) => err instanceof ConfigError && !err.message.includes('sk-short-secret') && err.message.includes('LLM_API_KEY'),
    );
  });
});
