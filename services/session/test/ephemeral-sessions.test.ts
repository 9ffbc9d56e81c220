import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { PersonaClient } from '@chat/clients';
import { sessionV1 } from '@chat/contracts';
import { connectDatabase, type Database, eventually, testDatabase, type IsolatedDatabase, Outbox, QueryTypes, testInfrastructure } from '@chat/db';
import { InProcessBus } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { configureLogger } from '@chat/logger';
import { Runtime, type ModuleDef } from '@chat/runtime';
import { SCHEMA } from '../src/adapters/postgres/migrations.js';
import { SessionRepository } from '../src/adapters/postgres/session-repo.js';
import { deleteEphemeralSessions, sessionHandlers, sessionModule } from '../src/index.js';

const logger = configureLogger({ silent: true });


/**
 * Sessions made for one OpenAI-compatible completion are marked ephemeral and swept after
 * OPENAI_SESSION_RETENTION_HOURS with their messages; ordinary sessions are never touched
 * (docs/decisions/0019). On real PostgreSQL.
 */
describe('session service: ephemeral (OpenAI-compatible) sessions', function () {
  this.timeout(120_000);
  let testDb: IsolatedDatabase | undefined;
  let url: string;
  let db: Database;
  let repo: SessionRepository;
  const owner = `owner-${randomUUID()}`;
  const bus = new InProcessBus();

  const runtime = () => {
    const modules: ModuleDef[] = [
      ...(testInfrastructure(url, bus, logger) as ModuleDef[]),
      sessionModule as ModuleDef,
    ];
    return new Runtime(modules, ['session'], { logger, env: { PERSONA_GRPC_ADDR: '127.0.0.1:1', OPENAI_SESSION_RETENTION_HOURS: '1' } });
  };
  const exists = async (id: string) =>
    (await db.sequelize.query('select 1 from session.sessions where id = :id', { replacements: { id }, type: QueryTypes.SELECT })).length > 0;
  const messages = async (id: string) =>
    Number((await db.sequelize.query<{ n: string }>('select count(*) as n from session.messages where session_id = :id', { replacements: { id }, type: QueryTypes.SELECT }))[0]!.n);
  const age = (id: string, hours: number) =>
    db.sequelize.query(`update session.sessions set created_at = now() - interval '${hours} hours' where id = :id`, { replacements: { id } });

  before(async () => {
    testDb = await testDatabase('session_ephemeral', logger);
    url = testDb.url;
    // The first start migrates (004 adds the ephemeral column).
    const first = runtime();
    await first.start();
    await first.stop();
    db = await connectDatabase(url, logger, 2);
    repo = new SessionRepository(db.sequelize, new Outbox(db.sequelize, SCHEMA, bus, logger));
  });

  after(async () => {
    closeClients();
    await db?.close();
    await testDb?.drop();
  });

  it('CreateSession stores the ephemeral flag (and leaves it off by default)', async () => {
    const personas = { getPersona: async () => ({}) } as unknown as PersonaClient;
    const handlers = sessionHandlers(repo, personas);
    const persona = randomUUID();
    const marked = await handlers.createSession(sessionV1.CreateSessionRequest.fromPartial({ ownerId: owner, personaId: persona, title: 'completion', ephemeral: true, history: [{ role: sessionV1.Role.ROLE_USER, content: 'hi' }] }));
    const plain = await handlers.createSession(sessionV1.CreateSessionRequest.fromPartial({ ownerId: owner, personaId: persona, title: 'mine' }));
    const flags = await db.sequelize.query<{ id: string; ephemeral: boolean }>('select id, ephemeral from session.sessions where id in (:ids)', {
      replacements: { ids: [marked.session!.id, plain.session!.id] },
      type: QueryTypes.SELECT,
    });
    assert.equal(flags.find((f) => f.id === marked.session!.id)?.ephemeral, true);
    assert.equal(flags.find((f) => f.id === plain.session!.id)?.ephemeral, false);
  });

  it('deletes only ephemeral sessions older than the cutoff, with their messages', async () => {
    const persona = randomUUID();
    const oldEphemeral = await repo.createSession(owner, persona, 'old completion', true);
    const newEphemeral = await repo.createSession(owner, persona, 'new completion', true);
    const oldOrdinary = await repo.createSession(owner, persona, 'old but mine');
    for (const s of [oldEphemeral, newEphemeral, oldOrdinary]) await repo.appendTurns(s.id, [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }]);
    await age(oldEphemeral.id, 30);
    await age(oldOrdinary.id, 30);
    const removed = await deleteEphemeralSessions(db.sequelize, new Date(Date.now() - 24 * 3_600_000));
    assert.ok(removed >= 1);
    assert.equal(await exists(oldEphemeral.id), false);
    assert.equal(await messages(oldEphemeral.id), 0, 'its messages went with it');
    assert.equal(await exists(newEphemeral.id), true, 'a recent ephemeral session stays');
    assert.equal(await exists(oldOrdinary.id), true, 'an ordinary session is never swept');
    assert.equal(await messages(oldOrdinary.id), 2);
  });

  it('the service sweeps at start with OPENAI_SESSION_RETENTION_HOURS', async () => {
    const persona = randomUUID();
    const stale = await repo.createSession(owner, persona, 'stale completion', true);
    const fresh = await repo.createSession(owner, persona, 'fresh completion', true);
    await age(stale.id, 2);
    const rt = runtime();
    await rt.start();
    try {
      await eventually(async () => !(await exists(stale.id)), 'the stale ephemeral session to be swept');
      assert.equal(await exists(fresh.id), true);
    } finally {
      await rt.stop();
    }
  });
});
