import assert from 'node:assert/strict';
import { schedulerV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import type { GatewayDeps } from '../src/deps.js';
import { adminOwnersFromEnv } from '../src/routes/admin.js';
import { alice, bob, testApp } from './harness.js';
import { FakeScheduler } from './fakes.js';

/** A scheduler fake with the dead-letter admin calls. */
class FakeAdminScheduler extends FakeScheduler {
  readonly letters: schedulerV1.DeadLetter[] = [
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
  ];
  readonly listed: schedulerV1.ListDeadLettersRequest[] = [];
  async listDeadLetters(req: schedulerV1.DeepPartial<schedulerV1.ListDeadLettersRequest>): Promise<schedulerV1.ListDeadLettersResponse> {
    this.listed.push(schedulerV1.ListDeadLettersRequest.fromPartial(req));
    return { deadLetters: this.letters.filter((d) => req.includeReplayed || !d.replayed), nextPageToken: '' };
  }
  async replayDeadLetter(req: schedulerV1.DeepPartial<schedulerV1.ReplayDeadLetterRequest>): Promise<schedulerV1.ReplayDeadLetterResponse> {
    const d = this.letters.find((x) => x.id === req.id);
    if (!d) throw AppError.notFound('dead letter', req.id ?? '');
    if (d.replayed) throw new AppError(Code.FailedPrecondition, 'already replayed', { reason: 'already_replayed' });
    Object.assign(d, { replayed: true, replayedAt: new Date('2026-01-02T00:00:00Z'), replayedBy: req.requestedBy });
    return { deadLetter: d };
  }
}

describe('admin API: dead letters', () => {
  const app = () => {
    const scheduler = new FakeAdminScheduler();
    const overrides = { scheduler, adminOwners: ['alice'] } as Partial<GatewayDeps>;
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

  it('reads ADMIN_OWNERS from the environment when not given', () => {
    assert.deepEqual(adminOwnersFromEnv({ ADMIN_OWNERS: 'root, ops@example.com' }), ['root', 'ops@example.com']);
    assert.deepEqual(adminOwnersFromEnv({}), []);
    assert.deepEqual(adminOwnersFromEnv({ ADMIN_OWNERS: 'bad owner!' }), []);
  });
});
