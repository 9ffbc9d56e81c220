import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { loopbackMesh } from '@chat/clients';
import { freePort, isolatedDatabase, type IsolatedDatabase } from '@chat/db';
import { startDevModel, type DevModel } from '@chat/devmodel';
import { configureLogger, getLogger } from '@chat/logger';
import { dumpOutput, startProc, stopProc, waitFor, waitReady, type Proc } from './harness.js';
import { API_KEYS, runLifecycle } from './lifecycle.js';

/** series matches one sample line of `name` carrying every label (in any order) and a value matching `value`. */
function series(name: string, labels: Record<string, string>, value = '[1-9][0-9.e+]*'): RegExp {
  const has = Object.entries(labels).map(([k, v]) => `(?=[^}]*\\b${k}="${v}")`).join('');
  return new RegExp(`^${name}\\{${has}[^}]*\\} ${value}$`, 'm');
}

describe('e2e: the message lifecycle', function () {
  this.timeout(180_000);

  describe('in all mode on embedded defaults', () => {
    let procs: Proc[] = [];
    let dataDir = '';
    let base = '';

    before(async () => {
      dataDir = mkdtempSync(join(tmpdir(), 'chat-e2e-'));
      const port = await freePort();
      base = `http://127.0.0.1:${port}`;
      procs = [startProc('all', 'all', { DATA_DIR: dataDir, GATEWAY_HTTP_LISTEN: `127.0.0.1:${port}`, API_KEYS })];
      try {
        await waitReady(base, procs);
      } catch (err) {
        dumpOutput(procs);
        throw err;
      }
    });

    afterEach(function () {
      if (this.currentTest?.state === 'failed') dumpOutput(procs);
    });

    after(async () => {
      for (const p of procs) await stopProc(p);
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('creates a persona, ingests knowledge, and streams a grounded reply over WebSocket', async () => {
      await runLifecycle(base);
    });

    it('exposes the process metrics on the gateway GET /metrics', async () => {
      const res = await fetch(`${base}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      assert.match(text, series('chat_scheduler_replies_total', { outcome: 'completed', target: 'all' }));
      assert.match(text, series('chat_scheduler_processing_seconds_count', { outcome: 'completed', target: 'all' }));
      assert.match(text, /^# TYPE chat_bus_dead_letters_total counter/m);
      assert.match(text, /^process_cpu_user_seconds_total\{target="all"\}/m);
    });

    it('drains and exits 0 on SIGTERM', async () => {
      const code = await stopProc(procs[0]!);
      assert.equal(code, 0, procs[0]!.output.slice(-10).join('\n'));
    });
  });

  describe('one OS process per target on real PostgreSQL, Kafka and Milvus', () => {
    const databaseUrl = process.env.DATABASE_URL;
    const brokers = process.env.KAFKA_BROKERS;
    const milvus = process.env.MILVUS_ADDRESS;
    let procs: Proc[] = [];
    let base = '';
    let llm: DevModel | undefined;
    let schedulerMetrics = '';
    let db: IsolatedDatabase | undefined;

    before(async function () {
      if (!databaseUrl || !brokers || !milvus) {
        // npm test starts the infrastructure itself (scripts/test.mjs); by hand, run scripts/infra up.
        throw new Error('DATABASE_URL, KAFKA_BROKERS or MILVUS_ADDRESS is not set (npm test starts them; or run scripts/infra up)');
      }
      const [persona, session, scheduler, rag, http, metrics] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
      const mesh = loopbackMesh({ persona, session, scheduler, rag });
      schedulerMetrics = `http://127.0.0.1:${metrics}/metrics`;
      const dataDir = mkdtempSync(join(tmpdir(), 'chat-e2e-mp-'));
      // An OpenAI-compatible server of our own, given through the LLM_* settings: the configured
      // path, not the built-in default.
      configureLogger({ silent: true });
      llm = await startDevModel({ host: '127.0.0.1', port: 0, logger: getLogger('e2e-llm') });
      // A database and a Kafka namespace of this run's own: other runs on the same servers
      // (another checkout, a benchmark) neither see nor relay this run's events.
      db = await isolatedDatabase(databaseUrl!, 'e2e_mp', getLogger('e2e-db'));
      const shared = {
        LLM_BASE_URL: llm.endpoint.baseUrl,
        LLM_API_KEY: 'e2e-llm-key',
        LLM_MODEL: llm.endpoint.model,
        DATABASE_URL: db.url,
        KAFKA_BROKERS: brokers!,
        KAFKA_NAMESPACE: `e2e-${randomUUID().slice(0, 8)}`,
        MILVUS_ADDRESS: milvus!,
        DATA_DIR: dataDir,
        API_KEYS,
        WS_TOKEN_SECRET: 'e2e-ws-token-secret-0123456789abcdef',
        ...mesh.addresses,
      };
      base = `http://127.0.0.1:${http}`;
      procs = [
        startProc('persona', 'persona', { ...shared, ...mesh.listen('persona') }),
        startProc('rag', 'rag', { ...shared, ...mesh.listen('rag') }),
        startProc('session', 'session', { ...shared, ...mesh.listen('session') }),
        startProc('scheduler', 'scheduler', { ...shared, ...mesh.listen('scheduler'), METRICS_LISTEN: `127.0.0.1:${metrics}` }),
        startProc('gateway', 'gateway', { ...shared, GATEWAY_HTTP_LISTEN: `127.0.0.1:${http}` }),
      ];
      try {
        await waitReady(base, procs);
        // Every process reports ready before traffic starts.
        await waitFor('every process to be ready', async () => (procs.every((p) => p.output.some((l) => l.includes('"message":"ready"'))) ? true : undefined), 90_000);
      } catch (err) {
        dumpOutput(procs);
        throw err;
      }
    });

    afterEach(function () {
      if (this.currentTest?.state === 'failed') dumpOutput(procs);
    });

    after(async () => {
      for (const p of [...procs].reverse()) await stopProc(p);
      await llm?.stop();
      await db?.drop();
    });

    it('creates a persona, ingests knowledge, and streams a grounded reply over WebSocket', async () => {
      await runLifecycle(base);
      // The rag process used the configured endpoint, not a development model of its own.
      const rag = procs.find((p) => p.name === 'rag')!;
      assert.ok(!rag.output.some((l) => /DEVELOPMENT model|development model is running/.test(l)), 'rag started its own development model');
    });

    it('serves the scheduler process metrics on METRICS_LISTEN', async () => {
      const res = await fetch(schedulerMetrics);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, series('chat_scheduler_replies_total', { outcome: 'completed', target: 'scheduler' }));
      assert.match(text, series('chat_scheduler_inflight_generations', { target: 'scheduler' }, '0'));
      assert.match(text, /^# TYPE chat_bus_retries_total counter/m);
    });

    it('drains and exits 0 on SIGTERM in every process', async () => {
      for (const p of [...procs].reverse()) assert.equal(await stopProc(p), 0, `${p.name}: ${p.output.slice(-10).join('\n')}`);
    });
  });
});
