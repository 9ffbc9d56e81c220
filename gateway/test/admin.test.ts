import assert from 'node:assert/strict';
import { schedulerV1 } from '@chat/contracts';
import type { GatewayDeps } from '../src/deps.js';
import { ConfigError, loadConfig } from '@chat/config';
import { gatewayConfig } from '../src/config.js';
import { alice, bob, testApp } from './harness.js';
import { FakeScheduler } from './fakes.js';

/** A scheduler fake holding one dead letter of bob's. */
class FakeAdminScheduler extends FakeScheduler {
  constructor() {
    super();
    this.letters.push(
      schedulerV1.DeadLetter.fromPartial({
      id: 'dl-1',
      topic: 'chat.messages.v1',
      key: 's-1',
      eventType: 'message.created',
      code: 'llm_unavailable',
      cause: 'the language model failed (503)',
      attempts: 3,
      group: 'scheduler',
      failedAt: new Date('2026-01-01T00:00:00Z'),
      sessionId: 's-1',
      messageId: 'm-1',
      replyId: 'r-1',
      ownerId: 'bob',
      originalPartition: 2,
      originalOffset: 17,
    }),
    );
  }
}

describe('admin API: dead letters', () => {
  const app = () => {
    const scheduler = new FakeAdminScheduler();
    const overrides: Partial<GatewayDeps> = { scheduler, adminOwners: ['alice'] };
    return { ...testApp(overrides), admin: scheduler };
  };

  it('lists dead letters for ADMIN_OWNERS only', async () => {
    const { gateway, admin } = app();
    const denied = await gateway.app.inject({ method: 'GET', url: '/api/admin/dead_letters', headers: bob });
    assert.equal(denied.statusCode, 403);
    assert.equal(denied.json().error.code, 'permission_denied');
    assert.equal((await gateway.app.inject({ method: 'GET', url: '/api/admin/dead_letters' })).statusCode, 401);
    const res = await gateway.app.inject({ method: 'GET', url: '/api/admin/dead_letters?topic=chat.messages.v1&limit=10', headers: alice });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.equal(body.next_page_token, null);
    assert.deepEqual(body.dead_letters[0], {
      id: 'dl-1',
      topic: 'chat.messages.v1',
      key: 's-1',
      event_type: 'message.created',
      code: 'llm_unavailable',
      cause: 'the language model failed (503)',
      attempts: 3,
      group: 'scheduler',
      failed_at: '2026-01-01T00:00:00.000Z',
      session_id: 's-1',
      message_id: 'm-1',
      reply_id: 'r-1',
      owner_id: 'bob',
      original_partition: 2,
      original_offset: '17',
      replayed: false,
      replayed_at: null,
      replayed_by: null,
    });
    assert.deepEqual(admin.listed[0], schedulerV1.ListDeadLettersRequest.fromPartial({ topic: 'chat.messages.v1', pageSize: 10, pageToken: '', includeReplayed: false }));
  });

  it('refuses bad queries with 400', async () => {
    const { gateway } = app();
    for (const q of ['limit=0', 'limit=501', 'topic=a%20b', 'include_replayed=yes', 'other=1']) {
      const res = await gateway.app.inject({ method: 'GET', url: `/api/admin/dead_letters?${q}`, headers: alice });
      assert.equal(res.statusCode, 400, `${q}: ${res.body}`);
    }
  });

  it('replays a dead letter once, recording who asked', async () => {
    const { gateway } = app();
    assert.equal((await gateway.app.inject({ method: 'POST', url: '/api/admin/dead_letters/dl-1/replay', headers: bob })).statusCode, 403);
    const res = await gateway.app.inject({ method: 'POST', url: '/api/admin/dead_letters/dl-1/replay', headers: alice });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal(res.json().dead_letter.replayed, true);
    assert.equal(res.json().dead_letter.replayed_by, 'alice');
    const again = await gateway.app.inject({ method: 'POST', url: '/api/admin/dead_letters/dl-1/replay', headers: alice });
    assert.equal(again.statusCode, 422);
    assert.equal(again.json().error.code, 'already_replayed');
    assert.equal((await gateway.app.inject({ method: 'POST', url: '/api/admin/dead_letters/nope/replay', headers: alice })).statusCode, 404);
  });

  it('ADMIN_OWNERS comes from the configuration; without it nobody is an admin', async () => {
    const cfg = (env: Record<string, string>) => loadConfig([gatewayConfig], env).get(gatewayConfig)!.ADMIN_OWNERS;
    assert.deepEqual(cfg({ ADMIN_OWNERS: 'root, ops@example.com' }), ['root', 'ops@example.com']);
    assert.equal(cfg({}), undefined);
    assert.throws(() => cfg({ ADMIN_OWNERS: 'bad owner!' }), (e: unknown) => e instanceof ConfigError && e.problems[0]!.variable === 'ADMIN_OWNERS');
    const { gateway } = testApp({ scheduler: new FakeAdminScheduler() });
    const denied = await gateway.app.inject({ method: 'GET', url: '/api/admin/dead_letters', headers: alice });
    assert.equal(denied.statusCode, 403);
  });
});
