import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { PersonaClient } from '@chat/clients';
import { sessionV1 } from '@chat/contracts';
import { connectDatabase, type Database, testDatabase, type IsolatedDatabase, migrate, Outbox, QueryTypes } from '@chat/db';
import { AppError, Code, isAppError } from '@chat/errors';
import { InProcessBus } from '@chat/events';
import { configureLogger } from '@chat/logger';
import pg from 'pg';
import { migrations, SCHEMA } from '../src/adapters/postgres/migrations.js';
import { SessionRepository } from '../src/adapters/postgres/session-repo.js';
import type { MessageStatus } from '../src/domain/session.js';
import { sessionHandlers } from '../src/handlers/session-handlers.js';
import { previousGetConversationWindow, previousListMessagesAfter } from './support/previous-window.js';

const logger = configureLogger({ silent: true });

/** An answer reduced to what a client sees: the encoded response, or the error's code, message and details. */
type Outcome<T = sessionV1.GetConversationWindowResponse> = { ok: Buffer; response: T } | { error: { code: Code; reason: string; message: string; details: unknown } };

async function outcome<T = sessionV1.GetConversationWindowResponse>(
  call: () => Promise<T>,
  codec: { encode(m: T): { finish(): Uint8Array } } = sessionV1.GetConversationWindowResponse as never,
): Promise<Outcome<T>> {
  try {
    const response = await call();
    return { ok: Buffer.from(codec.encode(response).finish()), response };
  } catch (err) {
    if (!isAppError(err)) throw err;
    return { error: { code: err.code, reason: err.reason, message: err.message, details: err.details } };
  }
}

/** runCounting runs fn and returns its result with every query sent to PostgreSQL meanwhile (each is one round trip). */
async function runCounting<T>(fn: () => Promise<T>): Promise<{ result: T; queries: string[] }> {
  const queries: string[] = [];
  const original = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const q = args[0] as string | { text?: string };
    queries.push(typeof q === 'string' ? q : String(q?.text));
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
  try {
    return { result: await fn(), queries };
  } finally {
    pg.Client.prototype.query = original;
  }
}

/**
 * GetConversationWindow in one statement (the scheduler's read before the model's request): on real
 * PostgreSQL, its answers are compared with the previous three-round-trip path's over a matrix of
 * sessions, windows, before ids and reply ids — byte for byte for answers, code, message and
 * details for errors — and its round trips are counted. ListMessagesAfter and UpdateSummary (the
 * summarizer's calls) fold their ownership read into their statement too.
 */
describe('session service: GetConversationWindow (and ListMessagesAfter, UpdateSummary) in one statement', function () {
  this.timeout(180_000);
  let testDb: IsolatedDatabase | undefined;
  let db: Database;
  let repo: SessionRepository;
  let handlers: ReturnType<typeof sessionHandlers>;
  let previous: ReturnType<typeof previousGetConversationWindow>;
  const owner = `owner-${randomUUID()}`;
  const other = `other-${randomUUID()}`;
  const personas = {} as unknown as PersonaClient; // GetConversationWindow never calls the persona service

  /** A session of the matrix: its id, owner and its messages' ids in order (user and reply ids by status). */
  interface Fixture {
    name: string;
    id: string;
    ownerId: string;
    messages: string[];
    replies: string[];
  }
  const fixtures: Fixture[] = [];

  const insert = async (sessionId: string, m: { role: 'user' | 'assistant'; content: string; status: MessageStatus; replyTo?: string; citations?: unknown[]; model?: string; error?: string }) => {
    const id = randomUUID();
    await db.sequelize.query(
      `insert into session.messages (id, session_id, role, content, status, reply_to, citations, model, error)
       values (:id, :session, :role, :content, :status, :replyTo, cast(:citations as jsonb), :model, :error)`,
      { replacements: { id, session: sessionId, role: m.role, content: m.content, status: m.status, replyTo: m.replyTo ?? null, citations: JSON.stringify(m.citations ?? []), model: m.model ?? '', error: m.error ?? '' } },
    );
    return id;
  };

  /** A session with one turn per reply status, interleaved with another session's messages (positions are global, so they have gaps). */
  const conversation = async (name: string, ownerId: string, interleave?: string): Promise<Fixture> => {
    const s = await repo.createSession(ownerId, randomUUID(), `${name} ✓`);
    const f: Fixture = { name, id: s.id, ownerId, messages: [], replies: [] };
    const statuses: MessageStatus[] = ['completed', 'failed', 'cancelled', 'completed', 'streaming', 'pending'];
    for (const [i, status] of statuses.entries()) {
      const user = await insert(s.id, { role: 'user', content: `${name} question ${i} — ünïcödé`, status: 'completed' });
      await db.sequelize.query('update session.messages set reply_id = :r where id = :id', { replacements: { r: randomUUID(), id: user } });
      if (interleave) await insert(interleave, { role: 'user', content: 'elsewhere', status: 'completed' });
      const reply = await insert(s.id, {
        role: 'assistant',
        content: status === 'pending' ? '' : `${name} answer ${i}`,
        status,
        replyTo: user,
        citations: status === 'completed' ? [{ source_id: randomUUID(), title: 'Velmora', url: 'https://example.org/v', chunk_id: `c${i}`, score: 0.5 + i / 100 }] : [],
        model: status === 'completed' ? 'dev-model' : '',
        error: status === 'failed' ? 'the model failed: 503' : '',
      });
      f.messages.push(user, reply);
      f.replies.push(reply);
    }
    await db.sequelize.query('update session.sessions set last_seq = 42 where id = :id', { replacements: { id: s.id } });
    return f;
  };

  before(async () => {
    testDb = await testDatabase('session_window', logger);
    const url = testDb.url;
    db = await connectDatabase(url, logger, 4);
    await migrate(db.sequelize, SCHEMA, migrations, logger);
    // Never started: nothing here writes events, and no sweep runs queries beside the counted ones.
    repo = new SessionRepository(db.sequelize, new Outbox(db.sequelize, SCHEMA, new InProcessBus(), logger));
    handlers = sessionHandlers(repo, personas);
    previous = previousGetConversationWindow(db.sequelize);

    const empty = await repo.createSession(owner, randomUUID(), 'empty');
    fixtures.push({ name: 'empty', id: empty.id, ownerId: owner, messages: [], replies: [] });
    const foreign = await conversation('foreign', other);
    const plain = await conversation('plain', owner, foreign.id);
    fixtures.push(plain);
    // A summary covering the first two turns, rewritten once (version 2).
    const summarized = await conversation('summarized', owner, plain.id);
    const pos = async (id: string) => Number((await db.sequelize.query<{ pos: string }>('select pos from session.messages where id = :id', { replacements: { id }, type: QueryTypes.SELECT }))[0]!.pos);
    assert.ok(await repo.updateSummary(summarized.id, 'first draft', await pos(summarized.messages[1]!), 0));
    assert.ok(await repo.updateSummary(summarized.id, 'The traveller asked about Velmora; “the lighthouse”.', await pos(summarized.messages[3]!), 1));
    fixtures.push(summarized);
    // A summary covering everything: the window is empty, the summary is all there is.
    const covered = await conversation('covered', owner);
    assert.ok(await repo.updateSummary(covered.id, 'x'.repeat(5_000), await pos(covered.messages[covered.messages.length - 1]!), 0));
    fixtures.push(covered);
    fixtures.push(foreign);
  });

  after(async () => {
    await db?.close();
    await testDb?.drop();
  });

  const request = (r: sessionV1.DeepPartial<sessionV1.GetConversationWindowRequest>) => sessionV1.GetConversationWindowRequest.fromPartial(r);

  it('answers exactly as the previous path over the whole matrix', async () => {
    const plain = fixtures.find((f) => f.name === 'plain')!;
    const foreign = fixtures.find((f) => f.name === 'foreign')!;
    const sessionIds: Array<[string, string]> = [
      ...fixtures.map((f): [string, string] => [f.name, f.id]),
      ['plain (upper case)', plain.id.toUpperCase()],
      ['unknown', randomUUID()],
      ['malformed', 'not-a-session'],
      ['empty id', ''],
    ];
    const seen = { ok: 0, notFound: 0, invalid: 0, withSummary: 0, full: 0, olderUncovered: 0, emptyWindow: 0, statuses: new Set<number>() };
    let cases = 0;
    for (const [name, sessionId] of sessionIds) {
      const f = fixtures.find((x) => x.id === sessionId.toLowerCase());
      const msgs = f?.messages ?? [];
      const befores = ['', msgs[0], msgs[Math.floor(msgs.length / 2)], msgs[msgs.length - 1], msgs[5]?.toUpperCase(), foreign.messages[3], plain.messages[2], randomUUID(), 'not-a-message'].filter(
        (x): x is string => x !== undefined,
      );
      const replies = ['', ...(f?.replies ?? []), msgs[0], foreign.replies[5], randomUUID(), 'not-a-reply'].filter((x): x is string => x !== undefined);
      for (const ownerId of f?.ownerId === other ? [owner, other] : [owner]) {
        for (const maxMessages of [0, 1, 3, 12, 1_000, 1_001]) {
          for (const beforeMessageId of befores) {
            for (const replyId of replies) {
              const req = request({ ownerId, sessionId, maxMessages, beforeMessageId, replyId });
              const [was, now] = [await outcome(() => previous(req)), await outcome(() => handlers.getConversationWindow(req))];
              const what = `${name} owner=${ownerId === owner ? 'owner' : 'other'} max=${maxMessages} before=${beforeMessageId} reply=${replyId}`;
              if ('ok' in was) {
                assert.ok('ok' in now, `${what}: an answer before, now ${JSON.stringify(now)}`);
                assert.deepStrictEqual(now.response, was.response, what);
                assert.ok(now.ok.equals(was.ok), `${what}: the encoded answers differ`);
                seen.ok++;
                if (was.response.summary!.version > 0) seen.withSummary++;
                if (was.response.messages.length === (maxMessages || 50)) seen.full++;
                if (was.response.olderUncovered > 0) seen.olderUncovered++;
                if (was.response.messages.length === 0) seen.emptyWindow++;
                seen.statuses.add(was.response.replyStatus);
              } else {
                assert.deepStrictEqual(now, was, what);
                if (was.error.code === Code.NotFound) seen.notFound++;
                if (was.error.code === Code.InvalidArgument) seen.invalid++;
              }
              cases++;
            }
          }
        }
      }
    }
    // Without an owner, both refuse before reading anything.
    for (const sessionId of [plain.id, 'x']) {
      const req = request({ ownerId: '', sessionId, maxMessages: 3 });
      const [was, now] = [await outcome(() => previous(req)), await outcome(() => handlers.getConversationWindow(req))];
      assert.ok('error' in was && was.error.code === Code.InvalidArgument);
      assert.deepStrictEqual(now, was);
    }
    // The matrix reached every kind of answer it is meant to compare.
    assert.ok(cases > 1_000, `${cases} cases`);
    assert.ok(seen.ok > 300 && seen.notFound > 100 && seen.invalid > 100, JSON.stringify({ ...seen, statuses: [...seen.statuses] }));
    assert.ok(seen.withSummary > 0 && seen.full > 0 && seen.olderUncovered > 0 && seen.emptyWindow > 0, JSON.stringify({ ...seen, statuses: [...seen.statuses] }));
    const S = sessionV1.MessageStatus;
    assert.deepEqual(
      [...seen.statuses].sort(),
      [S.MESSAGE_STATUS_UNSPECIFIED, S.MESSAGE_STATUS_PENDING, S.MESSAGE_STATUS_STREAMING, S.MESSAGE_STATUS_COMPLETED, S.MESSAGE_STATUS_FAILED, S.MESSAGE_STATUS_CANCELLED].sort(),
    );
  });

  it('reads the usual call in one round trip (the previous path took four)', async () => {
    const plain = fixtures.find((f) => f.name === 'plain')!;
    const summarized = fixtures.find((f) => f.name === 'summarized')!;
    // The scheduler's call: before the newest user message, with its reply's status; a full window (so the older count too).
    const usual = request({ ownerId: owner, sessionId: plain.id, beforeMessageId: plain.messages[10], maxMessages: 3, replyId: plain.replies[5] });
    const now = await runCounting(() => handlers.getConversationWindow(usual));
    assert.equal(now.queries.length, 1, now.queries.join('\n---\n'));
    assert.equal(now.result.messages.length, 3);
    assert.equal(now.result.olderUncovered, 7);
    assert.equal(now.result.replyStatus, sessionV1.MessageStatus.MESSAGE_STATUS_PENDING);
    // Before: five queries in four sequential round trips (ownership, position, window beside status, count).
    const was = await runCounting(() => previous(usual));
    assert.equal(was.queries.length, 5, was.queries.join('\n---\n'));
    assert.deepStrictEqual(now.result, was.result);

    const oneRoundTrip: Array<[string, sessionV1.GetConversationWindowRequest]> = [
      ['a window that is not full, with a summary', request({ ownerId: owner, sessionId: summarized.id, maxMessages: 200 })],
      ['the newest window of a full session', request({ ownerId: owner, sessionId: plain.id, maxMessages: 1, replyId: plain.replies[0] })],
      ['an unknown session', request({ ownerId: owner, sessionId: randomUUID(), maxMessages: 3 })],
      ['another owner’s session', request({ ownerId: other, sessionId: plain.id, beforeMessageId: plain.messages[3], maxMessages: 3 })],
      ['a before_message_id of another session', request({ ownerId: owner, sessionId: plain.id, beforeMessageId: summarized.messages[3], maxMessages: 3 })],
      ['a malformed before_message_id', request({ ownerId: owner, sessionId: plain.id, beforeMessageId: 'nope', maxMessages: 3 })],
    ];
    for (const [what, req] of oneRoundTrip) {
      const r = await runCounting(() => outcome(() => handlers.getConversationWindow(req)));
      assert.equal(r.queries.length, 1, `${what}: ${r.queries.join('\n---\n')}`);
    }
    // Refused before any query: a malformed session id, no owner.
    for (const req of [request({ ownerId: owner, sessionId: 'nope', maxMessages: 3 }), request({ ownerId: '', sessionId: plain.id })]) {
      const r = await runCounting(() => outcome(() => handlers.getConversationWindow(req)));
      assert.ok('error' in r.result);
      assert.equal(r.queries.length, 0, r.queries.join('\n---\n'));
    }
    // max_messages too large: refused without reading the window (only the ownership read that keeps NOT_FOUND first).
    const tooLarge = await runCounting(() => outcome(() => handlers.getConversationWindow(request({ ownerId: owner, sessionId: plain.id, maxMessages: 1_001 }))));
    assert.ok('error' in tooLarge.result && tooLarge.result.error.code === Code.InvalidArgument);
    assert.equal(tooLarge.queries.length, 1);
    assert.doesNotMatch(tooLarge.queries[0]!, /session\.messages/);
  });

  it('follows the session as it changes: a new turn, a new summary, a reply that finishes', async () => {
    const s = await repo.createSession(owner, randomUUID(), 'moving');
    const user = await insert(s.id, { role: 'user', content: 'hello', status: 'completed' });
    const reply = await insert(s.id, { role: 'assistant', content: '', status: 'pending', replyTo: user });
    const both = async (r: sessionV1.DeepPartial<sessionV1.GetConversationWindowRequest>) => {
      const req = request({ ownerId: owner, sessionId: s.id, ...r });
      const [was, now] = [await outcome(() => previous(req)), await outcome(() => handlers.getConversationWindow(req))];
      assert.deepStrictEqual(now, was);
      assert.ok('ok' in now);
      return now.response;
    };
    assert.equal((await both({ beforeMessageId: user, replyId: reply, maxMessages: 5 })).replyStatus, sessionV1.MessageStatus.MESSAGE_STATUS_PENDING);
    await repo.markStreaming(s.id, reply);
    assert.equal((await both({ beforeMessageId: user, replyId: reply, maxMessages: 5 })).replyStatus, sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING);
    await repo.recordReply({ sessionId: s.id, replyId: reply, messageId: user, seq: 7, status: 'completed', content: 'hi there', citations: [], model: 'm', error: '' });
    const done = await both({ replyId: reply, maxMessages: 5 });
    assert.equal(done.replyStatus, sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED);
    assert.equal(done.session!.lastSeq, 7);
    assert.deepEqual(
      done.messages.map((m) => m.content),
      ['hello', 'hi there'],
    );
    const next = await insert(s.id, { role: 'user', content: 'and then?', status: 'completed' });
    const posOf = async (id: string) => Number((await db.sequelize.query<{ pos: string }>('select pos from session.messages where id = :id', { replacements: { id }, type: QueryTypes.SELECT }))[0]!.pos);
    assert.ok(await repo.updateSummary(s.id, 'they greeted', await posOf(reply), 0));
    const after = await both({ beforeMessageId: next, maxMessages: 5 });
    assert.equal(after.summary!.text, 'they greeted');
    assert.deepEqual(after.messages, []);
    assert.deepEqual(
      (await both({ maxMessages: 5 })).messages.map((m) => m.content),
      ['and then?'],
    );
  });
  it('ListMessagesAfter answers exactly as before, in one round trip', async () => {
    const previousAfter = previousListMessagesAfter(db.sequelize);
    const plain = fixtures.find((f) => f.name === 'plain')!;
    const posOf = async (id: string) => Number((await db.sequelize.query<{ pos: string }>('select pos from session.messages where id = :id', { replacements: { id }, type: QueryTypes.SELECT }))[0]!.pos);
    const run = (call: () => Promise<sessionV1.ListMessagesAfterResponse>) => outcome(call, sessionV1.ListMessagesAfterResponse);
    const seen = { ok: 0, hasMore: 0, empty: 0, notFound: 0, invalid: 0 };
    const sessionIds = [...fixtures.map((f) => f.id), plain.id.toUpperCase(), randomUUID(), 'not-a-session', ''];
    for (const sessionId of sessionIds) {
      const f = fixtures.find((x) => x.id === sessionId.toLowerCase());
      const positions = f && f.messages.length > 0 ? [await posOf(f.messages[0]!), await posOf(f.messages[5]!), await posOf(f.messages[f.messages.length - 1]!)] : [];
      for (const ownerId of f?.ownerId === other ? [owner, other] : ['', owner]) {
        for (const afterPosition of [0, ...positions]) {
          for (const beforePosition of [0, ...positions, 1]) {
            for (const limit of [0, 1, 4, 1_000, 1_001]) {
              const req = sessionV1.ListMessagesAfterRequest.fromPartial({ ownerId, sessionId, afterPosition, beforePosition, limit });
              const [was, now] = [await run(() => previousAfter(req)), await run(() => handlers.listMessagesAfter(req))];
              const what = `${sessionId} owner=${ownerId} after=${afterPosition} before=${beforePosition} limit=${limit}`;
              if ('ok' in was) {
                assert.ok('ok' in now, `${what}: ${JSON.stringify(now)}`);
                assert.deepStrictEqual(now.response, was.response, what);
                assert.ok(now.ok.equals(was.ok), what);
                seen.ok++;
                if (was.response.hasMore) seen.hasMore++;
                if (was.response.messages.length === 0) seen.empty++;
              } else {
                assert.deepStrictEqual(now, was, what);
                if (was.error.code === Code.NotFound) seen.notFound++;
                if (was.error.code === Code.InvalidArgument) seen.invalid++;
              }
            }
          }
        }
      }
    }
    assert.ok(seen.ok > 50 && seen.hasMore > 0 && seen.empty > 0 && seen.notFound > 10 && seen.invalid > 10, JSON.stringify(seen));
    const counted = await runCounting(() => handlers.listMessagesAfter(sessionV1.ListMessagesAfterRequest.fromPartial({ ownerId: owner, sessionId: plain.id, limit: 5 })));
    assert.equal(counted.queries.length, 1, counted.queries.join('\n---\n'));
    assert.equal(counted.result.messages.length, 5);
    assert.equal(counted.result.hasMore, true);
    const foreign = await runCounting(() => run(() => handlers.listMessagesAfter(sessionV1.ListMessagesAfterRequest.fromPartial({ ownerId: other, sessionId: plain.id, limit: 5 }))));
    assert.ok('error' in foreign.result && foreign.result.error.code === Code.NotFound);
    assert.equal(foreign.queries.length, 1);
  });

  it('UpdateSummary checks ownership in its write: one round trip, NOT_FOUND before INVALID_ARGUMENT, ABORTED on a version conflict', async () => {
    const s = await repo.createSession(owner, randomUUID(), 'summaries');
    const update = (r: sessionV1.DeepPartial<sessionV1.UpdateSummaryRequest>) => handlers.updateSummary(sessionV1.UpdateSummaryRequest.fromPartial({ ownerId: owner, sessionId: s.id, ...r }));
    const rejects = (p: Promise<unknown>, code: Code, message: string, details?: unknown) =>
      assert.rejects(p, (err: unknown) => {
        assert.ok(isAppError(err), String(err));
        assert.equal(err.code, code);
        assert.equal(err.message, message);
        if (details !== undefined) assert.deepEqual(err.details, details);
        return true;
      });
    const stored = async () => db.sequelize.query<{ summary: string; version: string }>('select summary, version from session.summaries where session_id = :s', { replacements: { s: s.id }, type: QueryTypes.SELECT });

    // Unknown, foreign and malformed sessions: NOT_FOUND (also for an invalid summary), nothing written.
    for (const [ownerId, sessionId] of [
      [other, s.id],
      [owner, randomUUID()],
      [owner, 'not-a-session'],
    ] as const) {
      for (const [text, coveredUntil] of [
        ['a summary', 5],
        ['  ', 5],
        ['a summary', 0],
      ] as const) {
        await rejects(handlers.updateSummary(sessionV1.UpdateSummaryRequest.fromPartial({ ownerId, sessionId, text, coveredUntil, expectedVersion: 0 })), Code.NotFound, AppError.notFound('session', sessionId).message);
      }
    }
    assert.deepEqual(await stored(), []);
    await rejects(update({ text: ' ', coveredUntil: 0 }), Code.InvalidArgument, 'the summary is not valid', { fields: { text: 'must not be empty', covered_until: 'must be a message position' } });

    const first = await runCounting(() => update({ text: 'first', coveredUntil: 3, expectedVersion: 0 }));
    assert.equal(first.queries.length, 1, first.queries.join('\n---\n'));
    assert.deepEqual([first.result.summary!.text, first.result.summary!.coveredUntil, first.result.summary!.version], ['first', 3, 1]);
    // A second "first" summary, a stale version, covered_until moving back: ABORTED, nothing changes.
    for (const [expectedVersion, coveredUntil] of [
      [0, 4],
      [2, 4],
      [1, 2],
    ] as const) {
      const r = await runCounting(() => rejects(update({ text: 'conflict', coveredUntil, expectedVersion }), Code.Aborted, 'the summary changed meanwhile; read it again', { expected_version: expectedVersion }));
      assert.equal(r.queries.length, 1);
    }
    assert.deepEqual((await stored()).map((r) => [r.summary, Number(r.version)]), [['first', 1]]);
    const second = await update({ text: 'second', coveredUntil: 4, expectedVersion: 1 });
    assert.deepEqual([second.summary!.text, second.summary!.coveredUntil, second.summary!.version], ['second', 4, 2]);
    // Another owner cannot overwrite it, whatever the version.
    await rejects(handlers.updateSummary(sessionV1.UpdateSummaryRequest.fromPartial({ ownerId: other, sessionId: s.id, text: 'theirs', coveredUntil: 9, expectedVersion: 2 })), Code.NotFound, AppError.notFound('session', s.id).message);
    assert.deepEqual((await stored()).map((r) => [r.summary, Number(r.version)]), [['second', 2]]);
  });
  it('recovers when a connection lost its prepared statement (a pooler, DISCARD ALL): the call is made again on a fresh connection', async () => {
    // One connection, so the statement is lost on the connection the next call takes.
    const single = await connectDatabase(testDb!.url, logger, 1);
    try {
      const own = new SessionRepository(single.sequelize, new Outbox(single.sequelize, SCHEMA, new InProcessBus(), logger));
      const plain = fixtures.find((f) => f.name === 'plain')!;
      const read = () => own.ownedConversationWindow({ ownerId: owner, sessionId: plain.id, max: 3 });
      const first = await read();
      assert.equal(first?.messages.length, 3);
      await single.sequelize.query('deallocate all');
      // The connection that lost it leaves the pool; the read is made again, and answers.
      assert.deepStrictEqual(await read(), first);
      assert.deepStrictEqual(await read(), first);
    } finally {
      await single.close();
    }
  });
});
