import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { SessionClient, type ServiceEndpoint } from '@chat/clients';
import { eventsV1, sessionV1 } from '@chat/contracts';
import { connectDatabase, type Database, eventually, testDatabase, type IsolatedDatabase, Outbox, QueryTypes, testInfrastructure } from '@chat/db';
import { Code, isAppError } from '@chat/errors';
import { encodeEvent, InProcessBus, Topics } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { configureLogger } from '@chat/logger';
import { Runtime, type ModuleDef } from '@chat/runtime';
import { ReplyEventStore } from '../src/adapters/postgres/reply-events.js';
import { SCHEMA } from '../src/adapters/postgres/migrations.js';
import { SessionRepository } from '../src/adapters/postgres/session-repo.js';
import { sessionModule } from '../src/index.js';

const logger = configureLogger({ silent: true });


const delta = (sessionId: string, seq: number, text = `t${seq}`) =>
  eventsV1.ReplyEvent.fromPartial({ sessionId, replyId: randomUUID(), ownerId: 'o', seq, kind: { $case: 'delta', value: { text } } });

describe('session service: durable reply events (ListReplyEvents)', function () {
  this.timeout(120_000);
  let testDb: IsolatedDatabase | undefined;
  let runtime: Runtime;
  let bus: InProcessBus;
  let db: Database;
  let repo: SessionRepository;
  let store: ReplyEventStore;
  let client: SessionClient;
  const owner = `owner-${randomUUID()}`;

  before(async () => {
    testDb = await testDatabase('session_replies', logger);
    const url = testDb.url;
    bus = new InProcessBus();
    const modules: ModuleDef[] = [
      ...(testInfrastructure(url, bus, logger) as ModuleDef[]),
      sessionModule as ModuleDef,
    ];
    // The persona service is not called by what these tests use.
    runtime = new Runtime(modules, ['session'], { logger, env: { PERSONA_GRPC_ADDR: '127.0.0.1:1' } });
    await runtime.start();
    client = new SessionClient(runtime.get<ServiceEndpoint>('session').address);
    db = await connectDatabase(url, logger, 4);
    repo = new SessionRepository(db.sequelize, new Outbox(db.sequelize, SCHEMA, bus, logger));
    store = new ReplyEventStore(db.sequelize, logger);
  });

  after(async () => {
    await runtime?.stop();
    closeClients();
    await store?.close();
    await db?.close();
    await testDb?.drop();
  });

  const publish = (e: eventsV1.ReplyEvent) => bus.publish(Topics.replies, [{ key: e.sessionId, value: encodeEvent(eventsV1.ReplyEvent, e) }]);

  it('stores every reply event the service consumes and serves them after a seq, in order, in pages', async () => {
    const s = await repo.createSession(owner, randomUUID(), 'stored');
    for (let seq = 1; seq <= 5; seq++) await publish(delta(s.id, seq));
    await publish(eventsV1.ReplyEvent.fromPartial({ sessionId: s.id, replyId: randomUUID(), ownerId: owner, seq: 6, kind: { $case: 'completed', value: { content: 'done', model: 'm', citations: [{ sourceId: 'src', title: 'T', chunkId: 'c', score: 0.5 }] } } }));
    const all = await eventually(async () => {
      const r = await client.listReplyEvents({ ownerId: owner, sessionId: s.id, afterSeq: 0, limit: 100 });
      return r.events.length === 6 ? r : undefined;
    }, 'six stored events');
    assert.deepEqual(all.events.map((e) => e.seq), [1, 2, 3, 4, 5, 6]);
    assert.equal(all.hasMore, false);
    assert.equal(all.oldestSeq, 1);
    assert.equal(all.events[5]!.kind?.$case, 'completed');
    assert.equal(all.events[0]!.kind?.$case === 'delta' && all.events[0]!.kind.value.text, 't1');

    const page = await client.listReplyEvents({ ownerId: owner, sessionId: s.id, afterSeq: 2, limit: 2 });
    assert.deepEqual(page.events.map((e) => e.seq), [3, 4]);
    assert.equal(page.hasMore, true);
    // The session's last_seq follows the stored events (a restarted scheduler continues after it).
    const got = await client.getSession({ ownerId: owner, id: s.id, recentLimit: 1 });
    assert.equal(got.session?.lastSeq, 6);
  });

  it('keeps the first final event of a reply: a second one (another seq) is stored as a tombstone, and a reopened reply ends with its new outcome', async () => {
    const s = await repo.createSession(owner, randomUUID(), 'finals');
    const one = await repo.sendMessage(s, 'first', 0, `k-${randomUUID()}`);
    const two = await repo.sendMessage(s, 'second', 0, `k-${randomUUID()}`);
    const base = (replyId: string, messageId: string, seq: number) => ({ sessionId: s.id, replyId, messageId, ownerId: owner, seq });
    const statusOf = async (replyId: string) =>
      (await db.sequelize.query<{ status: string; error: string; content: string }>('select status, error, content from session.messages where id = :id', { replacements: { id: replyId }, type: QueryTypes.SELECT }))[0]!;
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(one.replyId, one.messageId, 1), kind: { $case: 'delta', value: { text: 'hel' } } }));
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(one.replyId, one.messageId, 2), kind: { $case: 'completed', value: { content: 'hello', model: 'm', citations: [] } } }));
    // The same message delivered again after its first run had finished: a second final, another seq.
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(one.replyId, one.messageId, 3), kind: { $case: 'failed', value: { code: 'reply_interrupted', message: 'interrupted' } } }));
    // The same final again (a plain redelivery, same seq) changes nothing either.
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(one.replyId, one.messageId, 2), kind: { $case: 'completed', value: { content: 'hello', model: 'm', citations: [] } } }));
    // The next reply fails, is reopened by a replayed dead letter and completes.
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(two.replyId, two.messageId, 4), kind: { $case: 'failed', value: { code: 'llm_unavailable', message: 'down' } } }));
    await eventually(async () => (await statusOf(two.replyId)).status === 'failed', 'the second reply stored failed');
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(two.replyId, two.messageId, 0), reopened: { deadLetterId: 'dl-1' } }));
    await eventually(async () => (await statusOf(two.replyId)).status === 'pending', 'the reopened reply back to pending');
    assert.equal((await statusOf(two.replyId)).error, '', 'the error is cleared');
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(two.replyId, two.messageId, 5), kind: { $case: 'delta', value: { text: 'again' } } }));
    await publish(eventsV1.ReplyEvent.fromPartial({ ...base(two.replyId, two.messageId, 6), kind: { $case: 'completed', value: { content: 'again', model: 'm', citations: [] } } }));
    const all = await eventually(async () => {
      const r = await client.listReplyEvents({ ownerId: owner, sessionId: s.id, afterSeq: 0, limit: 100 });
      return r.events.length === 6 ? r : undefined;
    }, 'six stored events');
    assert.deepEqual(
      all.events.map((e) => `${e.seq}:${e.kind?.$case ?? 'tombstone'}`),
      ['1:delta', '2:completed', '3:tombstone', '4:failed', '5:delta', '6:completed'],
    );
    assert.deepEqual(await statusOf(one.replyId), { status: 'completed', error: '', content: 'hello' }, 'the first final wins');
    assert.deepEqual(await statusOf(two.replyId), { status: 'completed', error: '', content: 'again' }, 'the reopened reply ends completed');
    const got = await client.getSession({ ownerId: owner, id: s.id, recentLimit: 1 });
    assert.equal(got.session?.lastSeq, 6);
  });

  it('answers NOT_FOUND for another owner’s session and INVALID_ARGUMENT for a too large page', async () => {
    const s = await repo.createSession(owner, randomUUID(), 'guarded');
    await assert.rejects(client.listReplyEvents({ ownerId: 'someone-else', sessionId: s.id }), (err: unknown) => isAppError(err) && err.code === Code.NotFound);
    await assert.rejects(client.listReplyEvents({ ownerId: owner, sessionId: 'not-a-uuid' }), (err: unknown) => isAppError(err) && err.code === Code.NotFound);
    await assert.rejects(client.listReplyEvents({ ownerId: owner, sessionId: s.id, limit: 5_000 }), (err: unknown) => isAppError(err) && err.code === Code.InvalidArgument);
  });

  it('group-commits concurrent appends, keeps the first copy of a redelivered event and drops events of deleted sessions', async () => {
    const sessions = await Promise.all([1, 2, 3, 4].map((i) => repo.createSession(owner, randomUUID(), `batch ${i}`)));
    let inserts = 0;
    const query = db.sequelize.query.bind(db.sequelize);
    (db.sequelize as unknown as { query: typeof query }).query = ((sql: unknown, opts: unknown) => {
      if (typeof sql === 'string' && sql.includes('insert into session.reply_events')) inserts++;
      return (query as (a: unknown, b: unknown) => unknown)(sql, opts);
    }) as typeof query;
    try {
      const appends = sessions.flatMap((s) => Array.from({ length: 25 }, (_, i) => delta(s.id, i + 1))).map((e) => store.append({ sessionId: e.sessionId, seq: e.seq, payload: eventsV1.ReplyEvent.encode(e).finish() }));
      await Promise.all(appends);
    } finally {
      (db.sequelize as unknown as { query: typeof query }).query = query;
    }
    assert.ok(inserts >= 1 && inserts < 100, `100 events took ${inserts} insert statements`);
    for (const s of sessions) assert.equal((await store.list(s.id, 0, 100)).events.length, 25);

    // Redelivery: the first copy stays.
    const s0 = sessions[0]!;
    await store.append({ sessionId: s0.id, seq: 1, payload: eventsV1.ReplyEvent.encode(delta(s0.id, 1, 'changed')).finish() });
    const first = eventsV1.ReplyEvent.decode((await store.list(s0.id, 0, 1)).events[0]!.payload);
    assert.equal(first.kind?.$case === 'delta' && first.kind.value.text, 't1');

    // A deleted session takes its events with it, and later events for it are dropped quietly.
    await repo.deleteSession(owner, s0.id);
    await store.append({ sessionId: s0.id, seq: 26, payload: eventsV1.ReplyEvent.encode(delta(s0.id, 26)).finish() });
    const left = await db.sequelize.query<{ n: string }>('select count(*) as n from session.reply_events where session_id = :id', { replacements: { id: s0.id }, type: QueryTypes.SELECT });
    assert.equal(Number(left[0]!.n), 0);
  });

  it('deletes events older than the retention period and reports the oldest kept seq', async () => {
    const s = await repo.createSession(owner, randomUUID(), 'retention');
    for (let seq = 1; seq <= 6; seq++) await store.append({ sessionId: s.id, seq, payload: eventsV1.ReplyEvent.encode(delta(s.id, seq)).finish() });
    await db.sequelize.query(`update session.reply_events set created_at = now() - interval '2 days' where session_id = :id and seq <= 3`, { replacements: { id: s.id } });
    const removed = await store.deleteOlderThan(new Date(Date.now() - 24 * 3_600_000));
    assert.ok(removed >= 3);
    const page = await client.listReplyEvents({ ownerId: owner, sessionId: s.id, afterSeq: 0, limit: 100 });
    assert.deepEqual(page.events.map((e) => e.seq), [4, 5, 6]);
    assert.equal(page.oldestSeq, 4);
  });

  it('creates a session seeded with history turns, in order, and refuses a turn without a role', async () => {
    const personas = { getPersona: async () => ({}) } as never;
    const { sessionHandlers } = await import('../src/handlers/session-handlers.js');
    const h = sessionHandlers(repo, personas, store);
    const res = await h.createSession(
      sessionV1.CreateSessionRequest.fromPartial({
        ownerId: owner,
        personaId: randomUUID(),
        title: 'seeded',
        history: [
          { role: sessionV1.Role.ROLE_USER, content: 'first question' },
          { role: sessionV1.Role.ROLE_ASSISTANT, content: 'first answer' },
        ],
      }),
    );
    const { messages } = await client.listMessages({ ownerId: owner, sessionId: res.session!.id, limit: 10 });
    assert.deepEqual(messages.map((m) => [m.role, m.content, m.status]), [
      [sessionV1.Role.ROLE_USER, 'first question', sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED],
      [sessionV1.Role.ROLE_ASSISTANT, 'first answer', sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED],
    ]);
    await assert.rejects(
      h.createSession(sessionV1.CreateSessionRequest.fromPartial({ ownerId: owner, personaId: randomUUID(), history: [{ role: sessionV1.Role.ROLE_UNSPECIFIED, content: 'x' }] })),
      (err: unknown) => isAppError(err) && err.code === Code.InvalidArgument,
    );
  });
});
