import assert from 'node:assert/strict';
import { startProc } from './e2e/harness.js';

describe('launcher (main.js)', function () {
  this.timeout(30_000);

  it('lists the targets and their dependencies with --list-targets', async () => {
    const { spawnSync } = await import('node:child_process');
    const { MAIN } = await import('./e2e/harness.js');
    const r = spawnSync(process.execPath, [MAIN, '--list-targets'], { encoding: 'utf8' });
    assert.equal(r.status, 0);
    for (const t of ['all', 'gateway', 'session', 'persona', 'scheduler', 'rag']) assert.match(r.stdout, new RegExp(`^${t}: `, 'm'));
    assert.match(r.stdout, /^session: .*needs: metrics, database, bus/m);
  });

  it('exits non-zero with one clear line for an unknown target', async () => {
    const p = startProc('bogus', 'bogus', {});
    assert.equal(await p.exited, 2);
    const errors = p.output.filter((l) => l.includes('"level":"error"'));
    assert.equal(errors.length, 1);
    assert.match(errors[0]!, /unknown target \\"bogus\\"/);
  });

  it('exits non-zero naming the variable when configuration is wrong', async () => {
    const p = startProc('badcfg', 'persona', { DATABASE_URL: 'mysql://nope', PERSONA_GRPC_LISTEN: 'not-an-address' });
    assert.equal(await p.exited, 1);
    const text = p.output.join('\n');
    assert.match(text, /DATABASE_URL: must be a postgres:\/\/ URL/);
    assert.match(text, /PERSONA_GRPC_LISTEN: must be host:port/);
  });

  it('refuses to run one component alone on the embedded defaults, naming what is missing', async () => {
    const p = startProc('alone', 'scheduler', { PERSONA_GRPC_ADDR: '127.0.0.1:1', SESSION_GRPC_ADDR: '127.0.0.1:1', RAG_GRPC_ADDR: '127.0.0.1:1' });
    assert.equal(await p.exited, 1);
    assert.match(p.output.join('\n'), /KAFKA_BROKERS is required/);
  });
});
