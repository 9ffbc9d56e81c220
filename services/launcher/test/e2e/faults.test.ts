import assert from 'node:assert/strict';
import { Kafka, logLevel } from 'kafkajs';
import { connectDatabase, freePort, isolatedDatabase, QueryTypes, type Database, type IsolatedDatabase } from '@chat/db';
import { startDevModel, type DevModel } from '@chat/devmodel';
import { configureLogger, getLogger } from '@chat/logger';
import { Api, waitFor } from './harness.js';
import { OWNER_A_KEY } from './lifecycle.js';
import { Mesh } from './faults-mesh.js';
import {
  busyPartitions,
  checkConversations,
  endings,
  failedReplies,
  finalsNow,
  Load,
  midStream,
  openConversations,
  openCoveringConversations,
  sendLoad,
  unfinished,
  untilFinals,
  untilStreaming,
  type Conversation,
  type Outcome,
} from './faults-load.js';
import { PrivateKafka } from './private-kafka.js';
import { TcpProxy } from './tcp-proxy.js';

/** The processes of the standard mesh; each scenario starts from them. */
const STANDARD = ['persona', 'rag', 'session', 'scheduler-1', 'gateway'];
/** Partitions of every topic (KAFKA_PARTITIONS of the mesh). */
const PARTITIONS = 4;
/** How long every reply may take to be final after its scenario's fault is over. */
const BOUND_MS = 90_000;

/**
 * report prints what the replies ended as and bounds the failures: a fault may fail only the
 * replies it caught unfinished (`exposed`: sent, final frame not yet seen when it struck), never
 * the ones it did not touch.
 */
function report(name: string, o: Outcome, convs: Conversation[], exposed: string[], modelCalls?: number): void {
  const calls = modelCalls === undefined ? '' : `; ${modelCalls} model calls`;
  process.stdout.write(`      ${name}: ${o.replies} replies, ${o.completed} completed, ${o.failed} failed ${JSON.stringify(o.failures)}${calls}\n`);
  const allowed = new Set(exposed);
  const wrong = failedReplies(convs).filter((f) => !allowed.has(f.replyId));
  assert.deepEqual(wrong, [], `${name}: only replies the fault caught unfinished may fail`);
}

/** interrupted prints how the replies that were mid-stream when a fault struck ended (completed: finished or run again; or a failure code). */
function interrupted(name: string, convs: Conversation[], ids: string[]): void {
  process.stdout.write(`      ${name}: ${ids.length} replies were mid-stream at the fault; they ended as ${JSON.stringify(endings(convs, ids))}\n`);
}

/**
 * The fault suite of issue #4: the product as one OS process per target on real PostgreSQL and a
 * Kafka broker of its own (so it can be killed), an OpenAI-compatible model server streaming slowly
 * enough that replies are mid-stream when a fault strikes, and clients that reconnect and resume.
 * Every scenario ends with the same checker (`checkConversations`).
 */
describe('e2e: faults on real PostgreSQL and Kafka, one OS process per target', function () {
  this.timeout(150_000);
  const databaseUrl = process.env.DATABASE_URL;
  let kafka: PrivateKafka | undefined;
  let proxy: TcpProxy | undefined;
  let llm: DevModel | undefined;
  let db: IsolatedDatabase | undefined;
  let sql: Database | undefined;
  let mesh: Mesh | undefined;
  let api: Api;
  let wsBase = '';
  let personaId = '';
  const conversations: Conversation[] = [];

  const open = async (label: string, count: number) => {
    const convs = await openConversations(api, wsBase, personaId, label, count);
    conversations.push(...convs);
    return convs;
  };
  /** freshProxy replaces the proxy in front of the PROXIED listener (same port) by one that forwards. */
  const freshProxy = async () => {
    await proxy?.close();
    proxy = new TcpProxy(kafka!.proxyPort, kafka!.proxiedListenPort);
    await proxy.start();
  };
  /** consumed waits until a consumer group has committed everything of its topic. */
  const consumed = async (groupId: string, topic: string) => {
    const admin = new Kafka({ clientId: 'faults-admin', brokers: [kafka!.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      await waitFor(
        `${groupId} to consume ${topic} to its end`,
        async () => {
          const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
          const ends = await admin.fetchTopicOffsets(topic);
          const done = ends.every((e) => {
            const c = committed!.partitions.find((p) => p.partition === e.partition);
            return e.high === e.low || Number(c?.offset ?? -1) >= Number(e.high);
          });
          return done ? true : undefined;
        },
        60_000,
        250,
      );
    } finally {
      await admin.disconnect();
    }
  };
  const outboxRows = async () => Number((await sql!.sequelize.query<{ n: number }>('select count(*)::int as n from session.outbox', { type: QueryTypes.SELECT }))[0]!.n);

  before(async function () {
    this.timeout(240_000);
    if (!databaseUrl) throw new Error('DATABASE_URL is not set (npm test starts PostgreSQL; or run scripts/infra up)');
    configureLogger({ silent: true });
    const proxyPort = await freePort();
    // A broker of this suite's own: the shared one (other suites, other people) is never restarted.
    kafka = await PrivateKafka.create({ proxyPort });
    proxy = new TcpProxy(proxyPort, kafka.proxiedListenPort);
    await proxy.start();
    const started = kafka.start();
    // Replies of about a dozen chunks at 8 chunks/s: a fault strikes while they stream.
    llm = await startDevModel({ host: '127.0.0.1', port: 0, logger: getLogger('faults-llm'), script: { tokensPerSecond: 8 } });
    db = await isolatedDatabase(databaseUrl, 'e2e_faults', getLogger('faults-db'));
    sql = await connectDatabase(db.url, getLogger('faults-db'), 1);
    await started;
    mesh = new Mesh({
      databaseUrl: db.url,
      brokers: kafka.brokers,
      llm: { baseUrl: llm.endpoint.baseUrl, model: llm.endpoint.model },
      env: {
        KAFKA_PARTITIONS: String(PARTITIONS),
        SCHEDULER_REPLY_TIMEOUT_MS: '30000',
        // One test client polls every session's history: the per-key limits are not under test here.
        RATE_LIMIT_KEY_PER_MINUTE: '100000',
        RATE_LIMIT_KEY_BURST: '10000',
        MAX_STREAMS_PER_OWNER: '200',
        // To run the suite with many messages per partition in hand (decision 0008), e.g. 4.
        ...(process.env.FAULTS_SCHEDULER_PARTITION_CONCURRENCY ? { SCHEDULER_PARTITION_CONCURRENCY: process.env.FAULTS_SCHEDULER_PARTITION_CONCURRENCY } : {}),
      },
    });
    await mesh.start();
    api = new Api(mesh.base, OWNER_A_KEY);
    wsBase = mesh.base.replace(/^http/, 'ws');
    // No knowledge: the development model answers "… You asked: <the message>", so each reply
    // shows which message it answers.
    const p = await api.call('POST', '/api/personas', { name: 'Fault persona', system_prompt: 'You answer briefly.' });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    personaId = p.body.id;
  });

  /** Model calls at the start of the running scenario (a reply run twice calls the model twice). */
  let callsAtStart = 0;
  const calls = () => llm!.stats.completions - callsAtStart;

  beforeEach(async function () {
    callsAtStart = llm!.stats.completions;
    // Every scenario starts from the standard mesh, whatever the previous one left.
    for (const n of mesh!.running()) if (!STANDARD.includes(n) || Object.keys(mesh!.overrides.get(n) ?? {}).length > 0) await mesh!.stop(n);
    for (const n of STANDARD) if (!mesh!.running().includes(n)) await mesh!.restart(n);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') {
      mesh?.dump();
      process.stderr.write(`\n--- private kafka ---\n${kafka?.logTail() ?? ''}\n`);
    }
  });

  after(async function () {
    this.timeout(120_000);
    for (const c of conversations) c.close();
    await mesh?.close();
    await proxy?.close();
    await llm?.stop();
    await kafka?.stop();
    await sql?.close();
    await db?.drop();
  });

  it('SIGKILL of the scheduler mid-stream: a new scheduler continues every session, one final reply each, in order', async () => {
    const convs = await open('kill-scheduler', 4);
    const load = new Load(convs, { outstanding: 2, max: 6, gapMs: 100 });
    await untilStreaming(convs);
    const exposed = unfinished(convs);
    await mesh!.kill9('scheduler-1');
    const struck = midStream(convs);
    await Promise.all(convs.map((c) => c.reconnect()));
    await mesh!.restart('scheduler-1');
    await untilFinals(convs, finalsNow(convs) + 4); // the new scheduler takes over
    await load.stop();
    report('scheduler SIGKILL', await checkConversations(convs, BOUND_MS), convs, exposed, calls());
    interrupted('scheduler SIGKILL', convs, struck);
  });

  it('session service killed between commit and publish: the outbox publishes after restart, no loss, no duplicate', async () => {
    // The session process reaches Kafka through a proxy this test controls.
    await freshProxy();
    await mesh!.stop('session');
    await mesh!.restart('session', { KAFKA_BROKERS: kafka!.proxiedBrokers });
    const convs = await open('kill-session', 3);
    await waitFor('the session outbox to be empty', async () => ((await outboxRows()) === 0 ? true : undefined));
    proxy!.stall();
    // Acknowledged means committed: rows and outbox events are in PostgreSQL; none can be published.
    await sendLoad(convs, 2, 0);
    assert.equal(await outboxRows(), 6, 'the six acknowledged messages wait in the outbox');
    for (const c of convs) {
      const r = await api.call('GET', `/api/sessions/${c.sessionId}/messages`);
      assert.deepEqual(
        r.body.messages.filter((m: { role: string }) => m.role === 'assistant').map((m: { status: string }) => m.status),
        ['pending', 'pending'],
        'no reply started: the events never reached Kafka',
      );
    }
    await mesh!.kill9('session');
    await mesh!.restart('session'); // on the real broker again: the sweep publishes what the crash left
    await sendLoad(convs, 2, 100);
    report('session SIGKILL before publish', await checkConversations(convs, BOUND_MS), convs, [], calls());
    assert.equal(calls(), 12, 'each acknowledged message was generated exactly once');
    await waitFor('the outbox to be drained', async () => ((await outboxRows()) === 0 ? true : undefined));
  });

  it('session service killed after publishing, before its outbox rows were deleted (acknowledgements lost): the events published again change nothing', async () => {
    await freshProxy();
    await mesh!.stop('session');
    await mesh!.restart('session', { KAFKA_BROKERS: kafka!.proxiedBrokers });
    const answeredAtStart = llm!.stats.answered;
    const convs = await open('ack-lost', 3);
    // A first message each, so the relay's producer is connected (a new connection's handshake
    // needs answers) before the answers stop.
    await sendLoad(convs, 1, 0);
    await waitFor('the first replies to finish', async () => (finalsNow(convs) === 3 ? true : undefined), 30_000, 50);
    await waitFor('the session outbox to be empty', async () => ((await outboxRows()) === 0 ? true : undefined));
    // Requests reach the broker, answers never come back: what the relay publishes now is stored
    // (its replies run), but the relay never learns it and keeps the rows (it waits on the first
    // batch's acknowledgement, so later rows wait too).
    proxy!.stallAnswers();
    await sendLoad(convs, 1, 0);
    await waitFor('a reply of an unacknowledged event to be generated', async () => (llm!.stats.answered - answeredAtStart > 3 ? true : undefined), 30_000, 50);
    assert.equal(await outboxRows(), 3, 'the relay still holds the three events, published or not');
    await mesh!.kill9('session');
    await mesh!.restart('session'); // its sweep publishes the three events, some a second time
    await waitFor('the outbox to be drained', async () => ((await outboxRows()) === 0 ? true : undefined));
    await consumed(`${mesh!.namespace}.scheduler`, `${mesh!.namespace}.chat.messages.v1`);
    await sendLoad(convs, 1, 0);
    report('session SIGKILL before the outbox delete', await checkConversations(convs, BOUND_MS), convs, [], calls());
    assert.equal(calls(), 9, 'the events delivered twice were generated once');
  });

  it('duplicate delivery (consumer offsets rewound to the start): no duplicate reply, no repeated side effect', async () => {
    const convs = await open('rewind', 3);
    await sendLoad(convs, 3, 50);
    report('before the rewind', await checkConversations(convs, BOUND_MS), convs, []);
    const checked = conversations.filter((c) => c.sent.length > 0);
    const snapshot = async () => JSON.stringify(await Promise.all(checked.map(async (c) => (await api.call('GET', `/api/sessions/${c.sessionId}/messages?limit=200`)).body)));
    const before = await snapshot();
    const framesBefore = checked.map((c) => c.arrivals.length);
    const llmCalls = llm!.stats.completions;

    const ns = mesh!.namespace;
    const groups = [
      { groupId: `${ns}.scheduler`, topic: `${ns}.chat.messages.v1` },
      { groupId: `${ns}.session.replies`, topic: `${ns}.chat.replies.v1` },
    ];
    const admin = new Kafka({ clientId: 'faults-admin', brokers: [kafka!.brokers], logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
    try {
      // The consumers must be gone from their groups before offsets can be moved.
      assert.equal(await mesh!.stop('scheduler-1'), 0);
      assert.equal(await mesh!.stop('session'), 0);
      for (const g of groups) {
        await waitFor(`${g.groupId} to be rewound`, async () => {
          await admin.resetOffsets({ groupId: g.groupId, topic: g.topic, earliest: true });
          return true;
        });
      }
      await mesh!.restart('session');
      await mesh!.restart('scheduler-1');
      // Everything is delivered again: wait until both groups have consumed the whole log again.
      for (const g of groups) await consumed(g.groupId, g.topic);
    } finally {
      await admin.disconnect();
    }
    assert.equal(llm!.stats.completions, llmCalls, 'no reply was generated again');
    assert.equal(await snapshot(), before, 'the stored conversations did not change');
    assert.deepEqual(
      checked.map((c) => c.arrivals.length),
      framesBefore,
      'no client received a frame again',
    );
    // The sessions go on: seqs continue, one reply per new message.
    await sendLoad(convs, 1, 0);
    report('after the rewind', await checkConversations(convs, BOUND_MS), convs, []);
  });

  it('rebalance under load: adding a scheduler, then removing one (SIGTERM and SIGKILL), loses, repeats and reorders nothing', async () => {
    // Sessions on every partition, each with replies streaming: a rebalance moves busy sessions.
    const convs = await openCoveringConversations(api, wsBase, personaId, 'rebalance', 6, PARTITIONS);
    conversations.push(...convs);
    const load = new Load(convs, { outstanding: 2, max: 30, gapMs: 100 }); // stopped after the last fault
    const allBusy = () => waitFor('a reply mid-stream on every partition', async () => (busyPartitions(convs, PARTITIONS).size === PARTITIONS ? true : undefined), 30_000, 20);
    await allBusy();
    await mesh!.restart('scheduler-2'); // a second replica joins the group mid-stream
    await untilFinals(convs, finalsNow(convs) + 6);
    assert.equal(await mesh!.stop('scheduler-1'), 0, 'SIGTERM drains and exits 0'); // the first leaves cleanly
    await untilFinals(convs, finalsNow(convs) + 6);
    await allBusy();
    await mesh!.restart('scheduler-1'); // back to two
    // And one dies while it is generating (whichever holds a reply in flight).
    const victim = await waitFor(
      'a scheduler to be generating a reply',
      async () => {
        for (const n of ['scheduler-1', 'scheduler-2']) if ((await mesh!.inflight(n)) > 0) return n;
        return undefined;
      },
      30_000,
      20,
    );
    // Adding a replica and removing one with SIGTERM are planned changes: they may move sessions,
    // never fail a reply.
    const failedByPlannedChanges = failedReplies(convs);
    const exposed = unfinished(convs);
    await mesh!.kill9(victim);
    const struck = midStream(convs);
    await untilFinals(convs, finalsNow(convs) + 4); // the survivor takes over
    await load.stop();
    report('rebalance', await checkConversations(convs, BOUND_MS), convs, [...exposed, ...failedByPlannedChanges.map((f) => f.replyId)], calls());
    interrupted('rebalance (replicas of both schedulers)', convs, struck);
    assert.deepEqual(failedByPlannedChanges, [], 'adding a scheduler replica and removing one with SIGTERM failed replies');
  });

  it('Kafka broker killed (SIGKILL) and restarted under load: every process rides it out, every reply final once, in order', async () => {
    const convs = await open('broker-restart', 4);
    const load = new Load(convs, { outstanding: 2, max: 8, gapMs: 100 });
    await untilStreaming(convs);
    const exposed = unfinished(convs);
    await kafka!.kill9();
    const struck = midStream(convs);
    await kafka!.start();
    await Promise.all(convs.map((c) => c.reconnect()));
    await untilFinals(convs, finalsNow(convs) + 4); // traffic flows again
    await load.stop();
    report('broker restart', await checkConversations(convs, BOUND_MS), convs, exposed, calls());
    interrupted('broker restart', convs, struck);
    assert.deepEqual(mesh!.running().sort(), [...STANDARD].sort(), 'no process died of the broker restart');
  });
});
