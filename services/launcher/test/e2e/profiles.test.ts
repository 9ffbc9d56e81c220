import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectDatabase, freePort, QueryTypes } from '@chat/db';
import { configureLogger } from '@chat/logger';
import { Api, Frames, dumpOutput, openSocket, startProc, stopProc, waitFor, type Proc, waitReady } from './harness.js';
import { API_KEYS, OWNER_A_KEY } from './lifecycle.js';

/** FakeLlm is an OpenAI-compatible streaming server that records who called it with which key. */
interface FakeLlm {
  baseUrl: string;
  calls: Array<{ authorization: string; model: string }>;
  stop(): Promise<void>;
}

async function startFakeLlm(name: string): Promise<FakeLlm> {
  const calls: FakeLlm['calls'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      let model = '';
      try {
        model = String((JSON.parse(body) as { model?: unknown }).model ?? '');
      } catch {
        /* recorded as empty */
      }
      calls.push({ authorization: req.headers.authorization ?? '', model });
      if (!req.url?.endsWith('/chat/completions')) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const chunk = (content: string, finish: string | null) =>
        `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 0, model, choices: [{ index: 0, delta: content ? { content } : {}, finish_reason: finish }] })}\n\n`;
      res.write(chunk(`answer from ${name} `, null));
      res.write(chunk(`(${model})`, null));
      res.write(chunk('', 'stop'));
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { baseUrl: `http://127.0.0.1:${port}/v1`, calls, stop: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('e2e: API profiles resolved at run time (all mode, embedded defaults)', function () {
  this.timeout(180_000);
  let procs: Proc[] = [];
  let dataDir = '';
  let base = '';
  let llmA: FakeLlm;
  let llmB: FakeLlm;
  const keyA = `sk-e2e-canary-a-${randomUUID().replace(/-/g, '')}`;
  const keyB = `sk-e2e-canary-b-${randomUUID().replace(/-/g, '')}`;

  before(async () => {
    configureLogger({ silent: true });
    [llmA, llmB] = await Promise.all([startFakeLlm('server-a'), startFakeLlm('server-b')]);
    dataDir = mkdtempSync(join(tmpdir(), 'chat-e2e-profiles-'));
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
    await llmA?.stop();
    await llmB?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('sends replies through the persona’s profile, follows profile changes without a restart, and fails fast on an unusable profile', async () => {
    const api = new Api(base, OWNER_A_KEY);
    const wsBase = base.replace(/^http/, 'ws');

    const created = await api.call('POST', '/api/api_profiles', { name: 'server A', provider: 'openai_compatible', base_url: llmA.baseUrl, model: 'model-a', api_key: keyA });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const profile = created.body;
    assert.ok(!JSON.stringify(profile).includes(keyA));

    const p = await api.call('POST', '/api/personas', { name: `Profiled ${randomUUID().slice(0, 6)}`, system_prompt: 'Answer briefly.', api_profile_id: profile.id });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    const persona = p.body;
    const s = await api.call('POST', '/api/sessions', { persona_id: persona.id, title: 'profiles' });
    assert.equal(s.status, 201, JSON.stringify(s.body));
    const session = s.body;
    const tok = await api.call('POST', `/api/sessions/${session.id}/ws_token`);
    const ws = await openSocket(wsBase, session.id, tok.body.ws_token);
    const frames = new Frames(ws);
    /** send posts a message and returns its final frame (reply.completed or reply.failed) and how long it took. */
    const send = async (content: string) => {
      const t0 = Date.now();
      const sent = await api.call('POST', `/api/sessions/${session.id}/messages`, { content });
      assert.equal(sent.status, 202, JSON.stringify(sent.body));
      const final = await frames.until((f) => (f.type === 'reply.completed' || f.type === 'reply.failed') && f.reply_id === sent.body.reply_id, 30_000);
      return { final, ms: Date.now() - t0 };
    };

    try {
      // 1. The reply comes from server A with the profile's key.
      const first = await send('hello A');
      assert.equal(first.final.type, 'reply.completed', JSON.stringify(first.final));
      assert.match(first.final.content, /answer from server-a \(model-a\)/);
      assert.ok(llmA.calls.length >= 1);
      assert.deepEqual(
        llmA.calls.map((c) => c.authorization),
        llmA.calls.map(() => `Bearer ${keyA}`),
      );
      assert.equal(llmB.calls.length, 0);

      // 2. The profile now points at server B with another model and key: the next message goes there.
      const patched = await api.call('PATCH', `/api/api_profiles/${profile.id}`, { base_url: llmB.baseUrl, model: 'model-b', api_key: keyB });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      const callsA = llmA.calls.length;
      const second = await waitFor(
        'a reply from server B',
        async () => {
          const r = await send('hello B');
          return r.final.type === 'reply.completed' && /server-b/.test(r.final.content) ? r : undefined;
        },
        20_000,
        200,
      );
      assert.match(second.final.content, /answer from server-b \(model-b\)/);
      assert.ok(llmB.calls.length >= 1);
      for (const c of llmB.calls) assert.equal(c.authorization, `Bearer ${keyB}`);
      assert.ok(llmA.calls.length - callsA <= 1, 'at most a reply racing the event went to the old server');

      // A profile in use cannot be deleted, so a persona never points at a deleted profile through the API.
      const del = await api.call('DELETE', `/api/api_profiles/${profile.id}`);
      assert.equal(del.status, 409, JSON.stringify(del.body));

      // 3. An unusable profile: its sealed key altered in the database (then any profile update
      // invalidates the caches) → the next reply fails with profile_unusable, quickly.
      const pgPort = procs[0]!.output.map((l) => /"message":"embedded PostgreSQL is running".*"port":(\d+)/.exec(l)?.[1]).find(Boolean);
      assert.ok(pgPort, 'the embedded PostgreSQL port is in the log');
      const db = await connectDatabase(`postgres://postgres:postgres@127.0.0.1:${pgPort}/chat`, configureLogger({ silent: true }), 1);
      try {
        await db.sequelize.query("update persona.api_profiles set api_key_tag = decode('00000000000000000000000000000000', 'hex') where id = $1", { bind: [profile.id], type: QueryTypes.UPDATE });
        const renamed = await api.call('PATCH', `/api/api_profiles/${profile.id}`, { name: 'server B (tampered)' });
        assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
        const tampered = await waitFor('a reply failing with profile_unusable', async () => {
          const r = await send('hello tampered');
          return r.final.type === 'reply.failed' ? r : undefined;
        }, 20_000, 200);
        assert.equal(tampered.final.error.code, 'profile_unusable', JSON.stringify(tampered.final));
        assert.ok(tampered.ms < 10_000, `the failure took ${tampered.ms} ms`);
        assert.ok(!JSON.stringify(tampered.final).includes(keyB));

        // 4. A persona naming a profile that does not exist (only possible for rows older than the
        // check) → profile_unusable ("missing"), after the profile event drops the cached resolution.
        await db.sequelize.query('update persona.personas set api_profile_id = $1 where id = $2', { bind: [randomUUID(), persona.id], type: QueryTypes.UPDATE });
        const again = await api.call('PATCH', `/api/api_profiles/${profile.id}`, { name: 'server B (unlinked)' });
        assert.equal(again.status, 200, JSON.stringify(again.body));
        const missing = await waitFor('a reply failing because the profile is missing', async () => {
          const r = await send('hello missing');
          return r.final.type === 'reply.failed' && /missing/.test(r.final.error.message) ? r : undefined;
        }, 20_000, 200);
        assert.equal(missing.final.error.code, 'profile_unusable');
        assert.ok(missing.ms < 10_000, `the failure took ${missing.ms} ms`);
      } finally {
        await db.close();
      }

      // 5. Unlinking the profile (api_profile_id: null) brings the default endpoint back.
      const unlinked = await api.call('PATCH', `/api/personas/${persona.id}`, { api_profile_id: null });
      assert.equal(unlinked.status, 200, JSON.stringify(unlinked.body));
      const back = await waitFor('a reply from the default model', async () => {
        const r = await send('hello default');
        return r.final.type === 'reply.completed' ? r : undefined;
      }, 20_000, 200);
      assert.match(back.final.content, /\[development model\]/);
    } finally {
      ws.close();
    }

    // The keys never appear in any process output line.
    for (const line of procs[0]!.output) {
      assert.ok(!line.includes(keyA) && !line.includes(keyB), `a key leaked into the log: ${line.slice(0, 200)}`);
    }
  });
});
