import assert from 'node:assert/strict';
import { ConfigError, defineConfig, env } from '@chat/config';
import { configureLogger } from '@chat/logger';
import { describeTargets, defineModule, parseTargets, Runtime, startOrder, type ModuleDef } from '../src/index.js';

configureLogger({ silent: true });

function recorder() {
  const events: string[] = [];
  const mod = (name: string, extra: Partial<ModuleDef> = {}): ModuleDef =>
    defineModule({
      name,
      ...extra,
      async init() {
        events.push(`start ${name}`);
        return { value: name, stop: async () => void events.push(`stop ${name}`) };
      },
    });
  return { events, mod };
}

describe('Runtime', () => {
  it('starts only the requested targets and their dependencies, dependencies first', () => {
    const { mod } = recorder();
    const modules = [mod('db'), mod('bus'), mod('a', { deps: ['db', 'bus'], target: true }), mod('b', { deps: ['bus'], target: true })];
    assert.deepEqual(startOrder(['b'], modules).map((m) => m.name), ['bus', 'b']);
    assert.deepEqual(startOrder(['a', 'b'], modules).map((m) => m.name), ['db', 'bus', 'a', 'b']);
  });

  it('orders by `after` only when that module runs too', () => {
    const { mod } = recorder();
    const modules = [mod('gw', { target: true, after: ['svc'] }), mod('svc', { target: true })];
    assert.deepEqual(startOrder(['gw', 'svc'], modules).map((m) => m.name), ['svc', 'gw']);
    assert.deepEqual(startOrder(['gw'], modules).map((m) => m.name), ['gw']);
  });

  it('rejects a dependency cycle, naming it', () => {
    const { mod } = recorder();
    const modules = [mod('a', { deps: ['b'], target: true }), mod('b', { deps: ['a'] })];
    assert.throws(() => startOrder(['a'], modules), /cycle: a -> b -> a/);
  });

  it('expands all and comma lists, and rejects unknown targets', () => {
    const { mod } = recorder();
    const modules = [mod('x', { target: true }), mod('y', { target: true }), mod('infra')];
    assert.deepEqual(parseTargets('all', modules), ['x', 'y']);
    assert.deepEqual(parseTargets('y, x', modules), ['y', 'x']);
    assert.throws(() => parseTargets('x,infra', modules), /unknown target "infra"/);
    assert.match(describeTargets(modules), /^all: /);
  });

  it('stops modules in reverse start order', async () => {
    const { events, mod } = recorder();
    const rt = new Runtime([mod('db'), mod('svc', { deps: ['db'], target: true }), mod('gw', { deps: ['svc'], target: true })], ['gw']);
    await rt.start();
    assert.equal(rt.get('svc'), 'svc');
    await rt.stop();
    assert.deepEqual(events, ['start db', 'start svc', 'start gw', 'stop gw', 'stop svc', 'stop db']);
  });

  it('stops what started and names the module when one fails to start', async () => {
    const { events, mod } = recorder();
    const bad = defineModule({
      name: 'bad',
      deps: ['db'],
      target: true,
      async init() {
        throw new Error('port in use');
      },
    });
    const rt = new Runtime([mod('db'), bad, mod('late', { deps: ['bad'], target: true })], ['late']);
    await assert.rejects(rt.start(), /module bad failed to start: port in use/);
    assert.deepEqual(events, ['start db', 'stop db']);
  });

  it('reports a module that crashes after start', async () => {
    let crash!: (e: Error) => void;
    const fragile = defineModule({
      name: 'fragile',
      target: true,
      async init() {
        return { value: 1, crashed: new Promise<never>((_, reject) => (crash = reject)) };
      },
    });
    const rt = new Runtime([fragile], ['fragile']);
    const crashed = new Promise<string>((resolve) => rt.onCrash((m, err) => resolve(`${m}: ${(err as Error).message}`)));
    await rt.start();
    crash(new Error('consumer died'));
    assert.equal(await crashed, 'fragile: consumer died');
    await rt.stop();
  });

  it('validates every configuration slice before starting any module', async () => {
    const { events, mod } = recorder();
    const slice = defineConfig({ NEEDED_URL: env.url() });
    const needy = defineModule({
      name: 'needy',
      target: true,
      deps: ['db'],
      config: [slice],
      async init(ctx) {
        return { value: ctx.config(slice).NEEDED_URL };
      },
    });
    await assert.rejects(new Runtime([mod('db'), needy], ['needy'], { env: {} }).start(), (err: unknown) => err instanceof ConfigError && /NEEDED_URL/.test(err.message));
    assert.deepEqual(events, []);
    const ok = new Runtime([mod('db'), needy], ['needy'], { env: { NEEDED_URL: 'http://x.test/' } });
    await ok.start();
    assert.equal(ok.get('needy'), 'http://x.test/');
    await ok.stop();
  });
});
