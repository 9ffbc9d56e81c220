import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { PersonaClient } from '@chat/clients';
import { eventsV1, sessionV1 } from '@chat/contracts';
import { connectDatabase, type Database, eventually, testDatabase, type IsolatedDatabase, migrate, Outbox, QueryTypes } from '@chat/db';
import { AppError, Code, isAppError } from '@chat/errors';
import { InProcessBus, Topics } from '@chat/events';
import { configureLogger } from '@chat/logger';
import { migrations, SCHEMA } from '../src/adapters/postgres/migrations.js';
import { SessionRepository } from '../src/adapters/postgres/session-repo.js';
import { KnownPersonas } from '../src/domain/known-personas.js';
import { sessionHandlers } from '../src/index.js';

const logger = configureLogger({ silent: true });

/** The failure marker: an outbox row whose payload contains it makes the insert raise (see the trigger below). */
const BOOM = 'fail-the-outbox-insert';

/**
 * The send paths in one statement (docs/decisions/0021), on real PostgreSQL: CreateSession with a
 * first message (session, history, message, pending reply and MessageCreated event at once) and
 * SendMessage with its ownership check folded into the writing statement. Every failure must leave
 * nothing behind — no session, no message, no event.
 */
describe('session service: create+send and send in one statement', function () {
  this.timeout(120_000);
  let testDb: IsolatedDatabase | undefined;
  let db: Database;
  let outbox: Outbox;
  let handlers: ReturnType<typeof sessionHandlers>;
  let repo: SessionRepository;
  const bus = new InProcessBus();
  /** Every MessageCreated event the outbox published. */
  const published: eventsV1.MessageCreated[] = [];
  const owner = `owner-${randomUUID()}`;
  const other = `other-${randomUUID()}`;
  /** The persona service as the session service sees it: personas by owner; NOT_FOUND for unknown and foreign ones. */
  const personaOwners = new Map<string, string>();
  let personaCalls = 0;
  const personas = {
    async getPersona(req: { ownerId: string; id: string }) {
      personaCalls++;
      if (personaOwners.get(req.id.toLowerCase()) !== req.ownerId) throw AppError.notFound('persona', req.id);
      return { persona: { id: req.id.toLowerCase(), ownerId: req.ownerId } };
    },
  } as unknown as PersonaClient;

  const q = async <T extends object>(sql: string, replacements: Record<string, unknown> = {}) => db.sequelize.query<T>(sql, { replacements, type: QueryTypes.SELECT });
  const sessionsOf = async (o: string) => (await q<{ id: string }>('select id from session.sessions where owner_id = :o', { o })).map((r) => r.id);
  const messagesOf = (sessionId: string) =>
    q<{ id: string; role: string; content: string; status: string; reply_id: string | null; reply_to: string | null }>(
      'select id, role, content, status, reply_id, reply_to from session.messages where session_id = :s order by pos',
      { s: sessionId },
    );
  const messagesOfOwner = async (o: string) =>
    Number((await q<{ n: number }>('select count(*)::int as n from session.messages m join session.sessions s on s.id = m.session_id where s.owner_id = :o', { o }))[0]!.n);
  const eventsOf = (o: string) => published.filter((e) => e.ownerId === o);
  /** Pending outbox rows (the relay deletes the published ones). */
  const outboxRows = async () => Number((await q<{ n: number }>('select count(*)::int as n from session.outbox'))[0]!.n);
  const rejectsWith = async (p: Promise<unknown>, code: Code, check?: (e: AppError) => void) =>
    assert.rejects(p, (err: unknown) => {
      assert.ok(isAppError(err), String(err));
      assert.equal(err.code, code, `${err.code}: ${err.message}`);
      check?.(err);
      return true;
    });
  const newPersona = (o = owner) => {
    const id = randomUUID();
    personaOwners.set(id, o);
    return id;
  };
  const create = (req: sessionV1.DeepPartial<sessionV1.CreateSessionRequest>) => handlers.createSession(sessionV1.CreateSessionRequest.fromPartial(req));
  const send = (req: sessionV1.DeepPartial<sessionV1.SendMessageRequest>) => handlers.sendMessage(sessionV1.SendMessageRequest.fromPartial(req));

  before(async () => {
    testDb = await testDatabase('session_one_statement', logger);
    const url = testDb.url;
    db = await connectDatabase(url, logger, 4);
    await migrate(db.sequelize, SCHEMA, migrations, logger);
    // A fault to prove atomicity: the outbox insert — the last part of either statement — fails for
    // a payload carrying BOOM (this database is this test's own).
    await db.sequelize.query(`
      create function session.test_fail_outbox() returns trigger language plpgsql as $$
      begin
        if position(convert_to('${BOOM}', 'UTF8') in new.payload) > 0 then raise exception 'outbox insert failed on purpose'; end if;
        return new;
      end $$;
      create trigger test_fail_outbox before insert on session.outbox for each row execute function session.test_fail_outbox();`);
    await bus.subscribe({
      topics: [Topics.messages],
      groupId: 'test',
      handler: async (record) => {
        published.push(eventsV1.MessageCreated.decode(record.value));
      },
    });
    outbox = new Outbox(db.sequelize, SCHEMA, bus, logger);
    repo = new SessionRepository(db.sequelize, outbox);
    handlers = sessionHandlers(repo, personas);
  });

  after(async () => {
    await outbox?.stop();
    await db?.close();
    await testDb?.drop();
  });

  describe('CreateSession with first_message', () => {
    it('stores the session, its history, the message and its pending reply in order, and publishes one MessageCreated', async () => {
      const persona = newPersona();
      const res = await create({
        ownerId: owner,
        personaId: persona.toUpperCase(),
        title: 'completion',
        ephemeral: true,
        history: [
          { role: sessionV1.Role.ROLE_USER, content: 'first question' },
          { role: sessionV1.Role.ROLE_ASSISTANT, content: 'first answer' },
        ],
        firstMessage: { content: 'and the tides? ✓ ünïcödé', priority: 3 },
      });
      const session = res.session!;
      assert.equal(session.personaId, persona, 'the persona id as the persona service spells it');
      assert.ok(res.messageId && res.replyId && res.messageId !== res.replyId);
      const rows = await messagesOf(session.id);
      assert.deepEqual(
        rows.map((m) => [m.role, m.content, m.status]),
        [
          ['user', 'first question', 'completed'],
          ['assistant', 'first answer', 'completed'],
          ['user', 'and the tides? ✓ ünïcödé', 'completed'],
          ['assistant', '', 'pending'],
        ],
      );
      assert.equal(rows[2]!.id, res.messageId);
      assert.equal(rows[2]!.reply_id, res.replyId);
      assert.equal(rows[3]!.id, res.replyId);
      assert.equal(rows[3]!.reply_to, res.messageId);
      const flag = await q<{ ephemeral: boolean }>('select ephemeral from session.sessions where id = :id', { id: session.id });
      assert.equal(flag[0]!.ephemeral, true);
      await eventually(() => eventsOf(owner).some((e) => e.sessionId === session.id), 'the MessageCreated event is published');
      const events = eventsOf(owner).filter((e) => e.sessionId === session.id);
      assert.equal(events.length, 1);
      assert.deepEqual(
        { ...events[0]!, createdAt: undefined },
        // Not the session's first message: history came before it.
        { messageId: res.messageId, replyId: res.replyId, sessionId: session.id, ownerId: owner, personaId: persona, content: 'and the tides? ✓ ünïcödé', priority: 3, createdAt: undefined, firstInSession: false },
      );
      assert.ok(events[0]!.createdAt instanceof Date);
    });

    it('marks the message first_in_session when the session has no history (the scheduler may start on it at once)', async () => {
      const persona = newPersona();
      const res = await create({ ownerId: owner, personaId: persona, title: 'no history', ephemeral: true, firstMessage: { content: 'only question', priority: 0 } });
      const sessionId = res.session!.id;
      await eventually(() => eventsOf(owner).find((e) => e.sessionId === sessionId), 'the MessageCreated event is published');
      const event = eventsOf(owner).find((e) => e.sessionId === sessionId)!;
      assert.equal(event.firstInSession, true);
      assert.equal(event.messageId, res.messageId);
      // A later message of that session is not.
      const next = await send({ ownerId: owner, sessionId, content: 'second question' });
      await eventually(() => eventsOf(owner).find((e) => e.messageId === next.messageId), 'the second event');
      assert.equal(eventsOf(owner).find((e) => e.messageId === next.messageId)!.firstInSession, false);
    });

    it('publishes the first message itself when the call answers, without a relay pass (a claimed outbox row, decision 0024), and deletes the row', async () => {
      const persona = newPersona();
      // What reached the bus by the time the call answered (a relay pass would need two more round trips).
      const handedOver: string[] = [];
      const publish = bus.publish.bind(bus);
      bus.publish = async (topic, events) => {
        for (const e of events) handedOver.push(e.key);
        return publish(topic, events);
      };
      try {
        const res = await create({ ownerId: owner, personaId: persona, title: 'claimed', ephemeral: true, firstMessage: { content: 'fast path', priority: 0 } });
        const sessionId = res.session!.id;
        assert.deepEqual(handedOver, [sessionId], 'the event was on the bus when the call answered');
      } finally {
        bus.publish = publish;
      }
      const sessionId = handedOver[0]!;
      await eventually(() => eventsOf(owner).find((e) => e.sessionId === sessionId), 'the MessageCreated event is delivered');
      await eventually(async () => (await outboxRows()) === 0, 'the published row is deleted');
      assert.equal(eventsOf(owner).filter((e) => e.sessionId === sessionId).length, 1, 'published once');
    });

    it('without first_message creates the session and its history only (empty ids, no event)', async () => {
      const persona = newPersona();
      const before = published.length;
      const res = await create({ ownerId: owner, personaId: persona, history: [{ role: sessionV1.Role.ROLE_USER, content: 'only history' }] });
      assert.equal(res.messageId, '');
      assert.equal(res.replyId, '');
      assert.deepEqual((await messagesOf(res.session!.id)).map((m) => m.content), ['only history']);
      await eventually(async () => (await outboxRows()) === 0, 'the outbox is drained');
      assert.equal(published.length, before);
    });

    it('answers NOT_FOUND for an unknown or another owner’s persona and writes nothing', async () => {
      const o = `nf-${randomUUID()}`;
      const foreign = newPersona(other);
      for (const personaId of [randomUUID(), foreign]) {
        await rejectsWith(create({ ownerId: o, personaId, firstMessage: { content: 'hello' }, history: [{ role: sessionV1.Role.ROLE_USER, content: 'h' }] }), Code.NotFound);
      }
      assert.deepEqual(await sessionsOf(o), []);
      await eventually(async () => (await outboxRows()) === 0, 'the outbox is drained');
      assert.deepEqual(eventsOf(o), []);
    });

    it('answers INVALID_ARGUMENT for a bad history or first message before calling anyone, and writes nothing', async () => {
      const o = `bad-${randomUUID()}`;
      const personaId = newPersona(o);
      const calls = personaCalls;
      const bad: Array<[sessionV1.DeepPartial<sessionV1.CreateSessionRequest>, string]> = [
        [{ history: [{ role: sessionV1.Role.ROLE_UNSPECIFIED, content: 'x' }], firstMessage: { content: 'hi' } }, 'history.0.role'],
        [{ history: [{ role: sessionV1.Role.ROLE_USER, content: 'x'.repeat(32_001) }], firstMessage: { content: 'hi' } }, 'history.0.content'],
        [{ history: [{ role: sessionV1.Role.ROLE_USER, content: 'nul \u0000 inside' }], firstMessage: { content: 'hi' } }, 'history.0.content'],
        [{ firstMessage: { content: '   ' } }, 'first_message.content'],
        [{ firstMessage: { content: 'y'.repeat(32_001) } }, 'first_message.content'],
        [{ firstMessage: { content: 'nul \u0000 inside' } }, 'first_message.content'],
        [{ firstMessage: { content: 'hi', priority: 11 } }, 'first_message.priority'],
        [{ title: 'nul \u0000 title', firstMessage: { content: 'hi' } }, 'title'],
      ];
      for (const [req, field] of bad) {
        await rejectsWith(create({ ownerId: o, personaId, ...req }), Code.InvalidArgument, (e) => {
          const fields = (e.details as { fields?: Record<string, string> }).fields ?? {};
          assert.ok(field in fields, `${field} in ${JSON.stringify(fields)}`);
        });
      }
      assert.equal(personaCalls, calls, 'the persona service is not called for bad input');
      assert.deepEqual(await sessionsOf(o), []);
      assert.deepEqual(eventsOf(o), []);
    });

    it('is atomic: when the last write of the statement (the outbox row) fails, no session, history or message is left', async () => {
      const o = `atomic-${randomUUID()}`;
      const personaId = newPersona(o);
      await assert.rejects(
        create({ ownerId: o, personaId, ephemeral: true, history: [{ role: sessionV1.Role.ROLE_USER, content: 'seed' }], firstMessage: { content: `please ${BOOM}` } }),
        /outbox insert failed on purpose/,
      );
      assert.deepEqual(await sessionsOf(o), []);
      assert.equal(await messagesOfOwner(o), 0);
      assert.deepEqual(eventsOf(o), []);
      // The same request without the fault succeeds.
      const ok = await create({ ownerId: o, personaId, history: [{ role: sessionV1.Role.ROLE_USER, content: 'seed' }], firstMessage: { content: 'please' } });
      assert.deepEqual(await sessionsOf(o), [ok.session!.id]);
      assert.equal(await messagesOfOwner(o), 3);
    });
  });

  describe('SendMessage with the ownership check in the writing statement', () => {
    let sessionId = '';
    let personaId = '';
    before(async () => {
      personaId = newPersona();
      sessionId = (await create({ ownerId: owner, personaId, title: 'plain' })).session!.id;
    });

    it('stores the message and its pending reply and publishes MessageCreated with the session’s persona', async () => {
      // Content quoting the persona id and multi-byte text: the event is cut and joined by bytes.
      const content = `about ${personaId} — ☃ 🚀`;
      const res = await send({ ownerId: owner, sessionId, content, priority: -2 });
      const rows = await messagesOf(sessionId);
      assert.deepEqual(
        rows.slice(-2).map((m) => [m.id, m.role, m.content, m.status, m.reply_id, m.reply_to]),
        [
          [res.messageId, 'user', content, 'completed', res.replyId, null],
          [res.replyId, 'assistant', '', 'pending', null, res.messageId],
        ],
      );
      await eventually(() => published.some((e) => e.messageId === res.messageId), 'the MessageCreated event is published');
      const event = published.find((e) => e.messageId === res.messageId)!;
      assert.deepEqual(
        { ...event, createdAt: undefined },
        { messageId: res.messageId, replyId: res.replyId, sessionId, ownerId: owner, personaId, content, priority: -2, createdAt: undefined, firstInSession: false },
      );
      // Two sends in a row keep their order.
      const a = await send({ ownerId: owner, sessionId, content: 'one' });
      const b = await send({ ownerId: owner, sessionId, content: 'two' });
      assert.deepEqual((await messagesOf(sessionId)).slice(-4).map((m) => m.id), [a.messageId, a.replyId, b.messageId, b.replyId]);
      // (Their events are out before the next test counts events.)
      await eventually(() => [a, b].every((r) => published.some((e) => e.messageId === r.messageId)), 'both events are published');
    });

    it('answers NOT_FOUND for an unknown, another owner’s or a malformed session id and writes nothing', async () => {
      await eventually(async () => (await outboxRows()) === 0, 'earlier events are out');
      const before = (await messagesOf(sessionId)).length;
      const eventsBefore = published.length;
      await rejectsWith(send({ ownerId: other, sessionId, content: 'not mine' }), Code.NotFound);
      await rejectsWith(send({ ownerId: owner, sessionId: randomUUID(), content: 'nobody’s' }), Code.NotFound);
      await rejectsWith(send({ ownerId: owner, sessionId: 'not-a-uuid', content: 'malformed' }), Code.NotFound);
      await rejectsWith(send({ ownerId: owner, sessionId: '', content: 'empty' }), Code.NotFound);
      // With an idempotency key (the transactional path) too.
      await rejectsWith(send({ ownerId: other, sessionId, content: 'not mine', idempotencyKey: 'k' }), Code.NotFound);
      assert.equal((await messagesOf(sessionId)).length, before);
      await eventually(async () => (await outboxRows()) === 0, 'the outbox is drained');
      assert.equal(published.length, eventsBefore);
      assert.equal(await messagesOfOwner(other), 0);
    });

    it('answers INVALID_ARGUMENT for bad content before writing', async () => {
      const before = (await messagesOf(sessionId)).length;
      await rejectsWith(send({ ownerId: owner, sessionId, content: '' }), Code.InvalidArgument);
      await rejectsWith(send({ ownerId: owner, sessionId, content: 'a\u0000b' }), Code.InvalidArgument);
      await rejectsWith(send({ ownerId: owner, sessionId, content: 'x', priority: 99 }), Code.InvalidArgument);
      assert.equal((await messagesOf(sessionId)).length, before);
    });

    it('is atomic: when the outbox row fails, neither the message nor its reply row is left', async () => {
      const before = (await messagesOf(sessionId)).length;
      await assert.rejects(send({ ownerId: owner, sessionId, content: `x ${BOOM}` }), /outbox insert failed on purpose/);
      assert.equal((await messagesOf(sessionId)).length, before);
    });

    it('keeps the idempotency-key path: a repeated key returns the first ids and writes nothing', async () => {
      const key = `k-${randomUUID()}`;
      const first = await send({ ownerId: owner, sessionId, content: 'once', idempotencyKey: key });
      const again = await send({ ownerId: owner, sessionId, content: 'once', idempotencyKey: key });
      assert.deepEqual(again, first);
      const rows = await messagesOf(sessionId);
      assert.equal(rows.filter((m) => m.id === first.messageId || m.id === first.replyId).length, 2);
      await eventually(() => published.filter((e) => e.messageId === first.messageId).length === 1, 'one event');
    });

    it('the repository’s send for a session already read (no key) writes the same rows and event in one statement', async () => {
      const session = (await repo.getSession(owner, sessionId))!;
      const res = await repo.sendMessage(session, 'read first', 1, '');
      assert.deepEqual(
        (await messagesOf(sessionId)).slice(-2).map((m) => [m.id, m.role, m.content, m.status, m.reply_id, m.reply_to]),
        [
          [res.messageId, 'user', 'read first', 'completed', res.replyId, null],
          [res.replyId, 'assistant', '', 'pending', null, res.messageId],
        ],
      );
      const event = await eventually(() => published.find((e) => e.messageId === res.messageId), 'the MessageCreated event is published');
      assert.equal(event.personaId, personaId);
      assert.equal(event.replyId, res.replyId);
    });

    it('answers NOT_FOUND, not an internal error, when the session is deleted right before the send', async () => {
      const doomed = (await create({ ownerId: owner, personaId })).session!.id;
      await handlers.deleteSession(sessionV1.DeleteSessionRequest.fromPartial({ ownerId: owner, id: doomed }));
      await rejectsWith(send({ ownerId: owner, sessionId: doomed, content: 'too late' }), Code.NotFound);
      assert.equal((await messagesOf(doomed)).length, 0);
    });
  });

  describe('CreateSession with the persona remembered (KnownPersonas)', () => {
    it('asks the persona service once per persona and owner, again after the persona was deleted, and never remembers a refusal', async () => {
      const known = new KnownPersonas(60_000);
      const h = sessionHandlers(repo, personas, undefined, known);
      const persona = newPersona();
      const calls = personaCalls;
      for (let i = 0; i < 3; i++) await h.createSession(sessionV1.CreateSessionRequest.fromPartial({ ownerId: owner, personaId: i === 1 ? persona.toUpperCase() : persona, title: `t${i}` }));
      assert.equal(personaCalls - calls, 1, 'one call for three sessions (any spelling of the id)');
      // Another owner is asked about, and refused, every time.
      for (let i = 0; i < 2; i++) await rejectsWith(h.createSession(sessionV1.CreateSessionRequest.fromPartial({ ownerId: other, personaId: persona, title: 'x' })), Code.NotFound);
      assert.equal(personaCalls - calls, 3);
      assert.equal((await sessionsOf(other)).length, 0);
      // Deleted: forgotten on its event, so the persona service answers again (NOT_FOUND now).
      personaOwners.delete(persona);
      known.forget(persona);
      await rejectsWith(h.createSession(sessionV1.CreateSessionRequest.fromPartial({ ownerId: owner, personaId: persona, title: 'after delete' })), Code.NotFound);
      assert.equal(personaCalls - calls, 4);
    });
  });
});
