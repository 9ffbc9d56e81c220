import assert from 'node:assert/strict';
import { eventsV1, sessionV1 } from '@chat/contracts';
import { encodeEvent, Topics } from '@chat/events';
import { getLogger } from '@chat/logger';
import { SocketHub, type ReplyEventSource } from '../src/ws/hub.js';
import { alice, connect, testServer, tick } from './harness.js';

const delta = (session: string, seq: number) =>
  eventsV1.ReplyEvent.fromPartial({ sessionId: session, replyId: 'r', ownerId: 'alice', seq, kind: { $case: 'delta', value: { text: `t${seq}` } } });

/** A durable store stand-in: what the session service would have stored, with a controllable lag. */
class Store implements ReplyEventSource {
  events: eventsV1.ReplyEvent[] = [];
  calls = 0;
  /** Runs while a ListReplyEvents call is in flight (to publish live events during it). */
  during: (() => void) | undefined;
  async listReplyEvents(req: sessionV1.DeepPartial<sessionV1.ListReplyEventsRequest>): Promise<sessionV1.ListReplyEventsResponse> {
    this.calls++;
    const after = Number(req.afterSeq ?? 0);
    const limit = req.limit || 100;
    const mine = this.events.filter((e) => e.sessionId === req.sessionId).sort((a, b) => a.seq - b.seq);
    const page = mine.filter((e) => e.seq > after);
    const d = this.during;
    this.during = undefined;
    d?.();
    await tick(5);
    return { events: page.slice(0, limit), hasMore: page.length > limit, oldestSeq: mine[0]?.seq ?? 0 };
  }
  async getSession(): Promise<sessionV1.GetSessionResponse> {
    return { session: undefined, recentMessages: [] };
  }
}

function fakeSocket() {
  const frames: Array<Record<string, any>> = [];
  const ws = { readyState: 1, bufferedAmount: 0, send: (d: string) => frames.push(JSON.parse(d)), close: () => undefined };
  return { ws, frames, seqs: () => frames.filter((f) => typeof f.seq === 'number').map((f) => f.seq as number) };
}

const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

describe('reply resume beyond the gateway’s buffer (durable store)', () => {
  const newHub = (gapWaitMs = 300) => new SocketHub({ logger: getLogger('resume-test'), maxBufferedBytes: 1 << 20, heartbeatMs: 60_000, historyPerSession: 4, gapWaitMs });

  it('replays from the store on a gateway that never saw the session (restart, other instance), then continues live without gap or duplicate', async () => {
    const hub = newHub();
    const store = new Store();
    for (let seq = 1; seq <= 8; seq++) store.events.push(delta('s', seq));
    const s = fakeSocket();
    const client = { ws: s.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(client);
    // Live events arrive while the store is being read: 8 overlaps the stored ones, 9 and 10 are new.
    store.during = () => {
      for (const seq of [8, 9, 10]) hub.publish(delta('s', seq));
    };
    await hub.resume(client, 2, store);
    hub.publish(delta('s', 11));
    hub.publish(delta('s', 10)); // a redelivery
    assert.deepEqual(s.seqs(), range(3, 11));
  });

  it('waits for a store that lags the live stream, so a gap is filled in order', async () => {
    const hub = newHub(2_000);
    const store = new Store();
    for (let seq = 1; seq <= 3; seq++) store.events.push(delta('s', seq));
    const s = fakeSocket();
    const client = { ws: s.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(client);
    await hub.resume(client, 0, store);
    assert.deepEqual(s.seqs(), [1, 2, 3]);
    // 6 arrives live; 4 and 5 were published before this gateway subscribed and reach the store a bit later.
    hub.publish(delta('s', 6));
    await tick(30);
    store.events.push(delta('s', 4), delta('s', 5));
    for (let i = 0; i < 100 && s.seqs().length < 6; i++) await tick(10);
    hub.publish(delta('s', 7));
    assert.deepEqual(s.seqs(), range(1, 7));
  });

  it('says resume_gap when events are gone (retention) and goes on from the oldest kept one', async () => {
    const hub = newHub();
    const store = new Store();
    for (let seq = 5; seq <= 7; seq++) store.events.push(delta('s', seq));
    const s = fakeSocket();
    const client = { ws: s.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(client);
    await hub.resume(client, 1, store);
    assert.equal(s.frames[0]!.type, 'error');
    assert.equal(s.frames[0]!.error.code, 'resume_gap');
    assert.deepEqual(s.seqs(), [5, 6, 7]);
  });

  it('reports a gap that the store never fills after a bounded wait, then delivers what follows', async () => {
    const hub = newHub(100);
    const store = new Store();
    store.events.push(delta('s', 1));
    const s = fakeSocket();
    const client = { ws: s.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(client);
    await hub.resume(client, 0, store);
    hub.publish(delta('s', 4));
    for (let i = 0; i < 100 && !s.frames.some((f) => f.type === 'error'); i++) await tick(10);
    hub.publish(delta('s', 5));
    assert.deepEqual(s.seqs(), [1, 4, 5]);
    assert.equal(s.frames.find((f) => f.type === 'error')?.error.code, 'resume_gap');
  });

  it('serves a resume the ring buffer covers without asking the store', async () => {
    const hub = newHub();
    const store = new Store();
    for (let seq = 1; seq <= 3; seq++) hub.publish(delta('s', seq));
    const s = fakeSocket();
    const client = { ws: s.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(client);
    await hub.resume(client, 1, store);
    assert.deepEqual(s.seqs(), [2, 3]);
    assert.equal(store.calls, 0);
  });

  describe('over a WebSocket', () => {
    type Server = Awaited<ReturnType<typeof testServer>>;
    let srv: Server;
    const store = new Store();
    before(async () => {
      srv = await testServer({ heartbeatMs: 60_000 });
      (srv.sessions as unknown as ReplyEventSource).listReplyEvents = (req) => store.listReplyEvents(req);
    });
    after(async () => {
      await srv.running.stop();
    });
    const api = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(`${srv.running.url}${path}`, { method, headers: { ...alice, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
      return (await res.json()) as any;
    };

    it('resumes atomically with the upgrade from ?last_seq=, with stored then live frames, and every socket of the session gets the stream', async () => {
      const persona = await api('POST', '/api/personas', { name: 'Ada', system_prompt: 'You are Ada.' });
      const session = (await api('POST', '/api/sessions', { persona_id: persona.id })).id as string;
      for (let seq = 1; seq <= 5; seq++) store.events.push(delta(session, seq));
      const token = async () => (await api('POST', `/api/sessions/${session}/ws_token`)).ws_token as string;
      const a = await connect(`${srv.wsUrl}/ws/sessions/${session}?ws_token=${await token()}&last_seq=2`);
      const b = await connect(`${srv.wsUrl}/ws/sessions/${session}?ws_token=${await token()}`);
      assert.ok(a.client && b.client);
      const got: number[] = [];
      for (let i = 0; i < 3; i++) got.push((await a.client.next('reply.delta')).seq as number);
      assert.deepEqual(got, [3, 4, 5]);
      for (const seq of [6, 7]) {
        const e = delta(session, seq);
        await srv.bus.publish(Topics.replies, [{ key: session, value: encodeEvent(eventsV1.ReplyEvent, e) }]);
      }
      assert.deepEqual([(await a.client.next()).seq, (await a.client.next()).seq], [6, 7]);
      // The second socket (no resume) gets the live frames too.
      assert.deepEqual([(await b.client.next()).seq, (await b.client.next()).seq], [6, 7]);
      await assert.rejects(a.client.next(undefined, 100));
      a.client.close();
      b.client.close();
    });

    it('refuses a malformed last_seq with 400 before upgrading', async () => {
      const persona = await api('POST', '/api/personas', { name: 'Bo', system_prompt: 'You are Bo.' });
      const session = (await api('POST', '/api/sessions', { persona_id: persona.id })).id as string;
      const t = (await api('POST', `/api/sessions/${session}/ws_token`)).ws_token as string;
      const r = await connect(`${srv.wsUrl}/ws/sessions/${session}?ws_token=${t}&last_seq=-1`);
      assert.equal(r.status, 400);
    });
  });
});
