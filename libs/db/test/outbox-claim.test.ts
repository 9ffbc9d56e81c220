import assert from 'node:assert/strict';
import { configureLogger, getLogger } from '@chat/logger';
import type { EventBus, OutgoingEvent, Subscription } from '@chat/events';
import { connectDatabase, eventually, migrate, outboxClaimMigration, outboxMigration, Outbox, QueryTypes, testDatabase, type Database, type IsolatedDatabase } from '../src/index.js';

configureLogger({ silent: true });
const logger = getLogger('test');
const SCHEMA = 'outbox_claim_test';
const TOPIC = 'test.events';

/** A bus that records what it was given, and fails publishes while `failing` is set. */
class RecordingBus implements EventBus {
  readonly kind = 'in-process' as const;
  published: Array<{ topic: string; key: string; value: string }> = [];
  failing = false;
  async ensureTopics(): Promise<void> {}
  async publish(topic: string, events: OutgoingEvent[]): Promise<void> {
    if (this.failing) throw new Error('the bus is down');
    for (const e of events) this.published.push({ topic, key: e.key, value: Buffer.from(e.value).toString() });
  }
  async subscribe(): Promise<Subscription> {
    throw new Error('not used');
  }
  async close(): Promise<void> {}
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const event = (key: string, value: string): OutgoingEvent => ({ key, value: Buffer.from(value), headers: {} });

describe('outbox: a row claimed by its writer (on real PostgreSQL)', function () {
  this.timeout(60_000);
  let isolated: IsolatedDatabase;
  let db: Database;
  const outboxes: Outbox[] = [];

  before(async () => {
    isolated = await testDatabase('outbox_claim', logger);
    db = await connectDatabase(isolated.url, logger, 4);
    await migrate(db.sequelize, SCHEMA, [outboxMigration(SCHEMA), outboxClaimMigration(SCHEMA)], logger);
  });
  after(async () => {
    for (const o of outboxes) await o.stop();
    await db?.close();
    await isolated?.drop();
  });
  beforeEach(async () => {
    for (const o of outboxes.splice(0)) await o.stop();
    await db.sequelize.query(`delete from ${SCHEMA}.outbox`);
  });

  const make = (bus: EventBus, claimMs = 10_000, claimWaitMs = 1_000) => {
    const o = new Outbox(db.sequelize, SCHEMA, bus, logger, { sweepMs: 100, claimMs, claimWaitMs });
    outboxes.push(o);
    return o;
  };
  const rows = async () => db.sequelize.query<{ id: string; key: string; claimed: boolean }>(`select id, key, claimed_until is not null as claimed from ${SCHEMA}.outbox order by id`, { type: QueryTypes.SELECT });
  /** writes an event as a writer does (one statement), claimed or not; returns the row id. */
  const write = async (o: Outbox, e: OutgoingEvent, claim: boolean): Promise<string | undefined> => {
    const ins = o.insertStatement(TOPIC, e, { claim });
    const res = await db.sequelize.query<{ id?: string }>(claim ? `with o as (${ins.sql}) select id from o` : `${ins.sql} returning id`, { replacements: ins.replacements, type: QueryTypes.SELECT });
    return res[0]?.id;
  };

  it('publishes a claimed row at once through its writer, then deletes it; no relay publishes it a second time', async () => {
    const bus = new RecordingBus();
    const writer = make(bus);
    const otherReplica = make(bus);
    writer.start();
    otherReplica.start();
    const id = await write(writer, event('s1', 'first'), true);
    assert.ok(id, 'the statement returns the claimed row id');
    assert.deepEqual(await rows(), [{ id, key: 's1', claimed: true }]);
    // Relays sweeping meanwhile leave the row to its writer.
    otherReplica.kick();
    writer.kick();
    await sleep(300);
    assert.deepEqual(bus.published, [], 'no relay published the claimed row');
    await writer.publishClaimed(id, TOPIC, event('s1', 'first'));
    assert.deepEqual(bus.published, [{ topic: TOPIC, key: 's1', value: 'first' }], 'published once, when publishClaimed resolved');
    await eventually(async () => (await rows()).length === 0, 'the published row is deleted');
    otherReplica.kick();
    await sleep(300);
    assert.equal(bus.published.length, 1, 'still published once');
  });

  it('leaves unclaimed rows to the relay as before, beside a claimed one', async () => {
    const bus = new RecordingBus();
    const o = make(bus);
    const claimed = await write(o, event('new-session', 'claimed'), true);
    await write(o, event('s2', 'relayed'), false);
    o.kick();
    await eventually(async () => bus.published.length === 1, 'the relay publishes the unclaimed row');
    assert.deepEqual(bus.published, [{ topic: TOPIC, key: 's2', value: 'relayed' }]);
    assert.deepEqual((await rows()).map((r) => r.id), [claimed], 'the claimed row waits for its writer');
  });

  it('when the publish fails, gives the row back to the relay, which publishes it once the bus is back', async () => {
    const bus = new RecordingBus();
    const o = make(bus);
    o.start();
    const id = await write(o, event('s3', 'retry me'), true);
    bus.failing = true;
    await o.publishClaimed(id!, TOPIC, event('s3', 'retry me')); // does not throw: the row is committed
    assert.deepEqual(await rows(), [{ id, key: 's3', claimed: false }], 'the claim is dropped, the row stays');
    bus.failing = false;
    await eventually(async () => bus.published.length === 1 && (await rows()).length === 0, 'the relay publishes the row and deletes it');
    assert.deepEqual(bus.published, [{ topic: TOPIC, key: 's3', value: 'retry me' }]);
  });

  it('when the writer dies before publishing, a sweep publishes the row once its claim ran out', async () => {
    const bus = new RecordingBus();
    const dead = make(bus, 600); // wrote and claimed, then never published (a crash)
    await write(dead, event('s4', 'orphan'), true);
    const survivor = make(bus);
    survivor.start(); // sweeps every 100 ms
    await sleep(300);
    assert.deepEqual(bus.published, [], 'not while the claim holds');
    await eventually(async () => bus.published.length === 1 && (await rows()).length === 0, 'published after the claim', 10_000);
    assert.deepEqual(bus.published, [{ topic: TOPIC, key: 's4', value: 'orphan' }]);
  });

  it('does not hold its caller longer than claimWaitMs for a slow bus; the publish goes on and its row is deleted', async () => {
    const bus = new RecordingBus();
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    const publish = bus.publish.bind(bus);
    bus.publish = async (topic, events) => {
      await slow;
      return publish(topic, events);
    };
    const o = make(bus, 10_000, 200);
    const id = await write(o, event('s5', 'slow'), true);
    const started = Date.now();
    await o.publishClaimed(id!, TOPIC, event('s5', 'slow'));
    const waited = Date.now() - started;
    assert.ok(waited >= 150 && waited < 5_000, `returned after the wait, not with the bus (${waited} ms)`);
    assert.deepEqual(bus.published, [], 'the bus has not taken it yet');
    assert.deepEqual(await rows(), [{ id, key: 's5', claimed: true }], 'still claimed: no relay publishes it meanwhile');
    release();
    await eventually(async () => bus.published.length === 1 && (await rows()).length === 0, 'published and deleted once the bus took it');
  });

  it('refuses an id that is not an integer', async () => {
    const o = make(new RecordingBus());
    await assert.rejects(o.publishClaimed('1; drop table x', TOPIC, event('k', 'v')), /integers/);
  });
});
