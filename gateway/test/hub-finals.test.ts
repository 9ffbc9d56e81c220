import assert from 'node:assert/strict';
import { eventsV1, sessionV1 } from '@chat/contracts';
import { getLogger } from '@chat/logger';
import { SocketHub, type ReplyEventSource } from '../src/ws/hub.js';

// A reply has one final frame for its clients, even when a second final event of it reaches the
// log (a message delivered again whose first run had finished; decision 0018).

const ev = (seq: number, replyId: string, kind?: 'delta' | 'completed' | 'failed') =>
  eventsV1.ReplyEvent.fromPartial({
    sessionId: 's',
    replyId,
    ownerId: 'alice',
    seq,
    ...(kind === 'delta' ? { kind: { $case: 'delta' as const, value: { text: `t${seq}` } } } : {}),
    ...(kind === 'completed' ? { kind: { $case: 'completed' as const, value: { content: 'done', citations: [], model: 'm' } } } : {}),
    ...(kind === 'failed' ? { kind: { $case: 'failed' as const, value: { code: 'reply_interrupted', message: 'interrupted' } } } : {}),
  });

class Store implements ReplyEventSource {
  events: eventsV1.ReplyEvent[] = [];
  async listReplyEvents(req: sessionV1.DeepPartial<sessionV1.ListReplyEventsRequest>): Promise<sessionV1.ListReplyEventsResponse> {
    const page = this.events.filter((e) => e.seq > Number(req.afterSeq ?? 0)).sort((a, b) => a.seq - b.seq);
    return { events: page, hasMore: false, oldestSeq: this.events[0]?.seq ?? 0 };
  }
  async getSession(): Promise<sessionV1.GetSessionResponse> {
    return { session: undefined, recentMessages: [] };
  }
}

function fakeSocket() {
  const frames: Array<Record<string, any>> = [];
  const ws = { readyState: 1, bufferedAmount: 0, send: (d: string) => frames.push(JSON.parse(d)), close: () => undefined };
  return { ws, frames };
}

const newHub = () => new SocketHub({ logger: getLogger('hub-finals-test'), maxBufferedBytes: 1 << 20, heartbeatMs: 60_000, historyPerSession: 16, gapWaitMs: 300 });

describe('hub: one final frame per reply', () => {
  it('drops a second final of a reply (another seq) live, and the next frames follow without a gap or resume_gap', async () => {
    const hub = newHub();
    const s = fakeSocket();
    const client = { ws: s.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(client);
    await hub.resume(client, 0, new Store());
    hub.publish(ev(1, 'r1', 'delta'));
    hub.publish(ev(2, 'r1', 'completed'));
    hub.publish(ev(3, 'r1', 'failed')); // the duplicate final
    hub.publish(ev(4, 'r2', 'delta'));
    hub.publish(ev(5, 'r2', 'completed'));
    hub.publish(ev(2, 'r1', 'completed')); // the same final again (same seq): a plain redelivery
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(
      s.frames.map((f) => `${f.type}:${f.seq}`),
      ['reply.delta:1', 'reply.completed:2', 'reply.delta:4', 'reply.completed:5'],
    );
    // A later resume from the ring buffer does not bring it back either.
    const t = fakeSocket();
    const late = { ws: t.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(late);
    await hub.resume(late, 1, new Store());
    assert.deepEqual(
      t.frames.map((f) => `${f.type}:${f.seq}`),
      ['reply.completed:2', 'reply.delta:4', 'reply.completed:5'],
    );
  });

  it('lets the final of a reopened reply (replayed dead letter) through', () => {
    const hub = newHub();
    const s = fakeSocket();
    hub.add({ ws: s.ws as any, owner: 'alice', session: 's', alive: true });
    hub.publish(ev(1, 'r1', 'failed'));
    hub.publish(eventsV1.ReplyEvent.fromPartial({ sessionId: 's', replyId: 'r1', ownerId: 'alice', seq: 0, reopened: { deadLetterId: 'dl' } }));
    hub.publish(ev(2, 'r1', 'delta'));
    hub.publish(ev(3, 'r1', 'completed'));
    assert.deepEqual(
      s.frames.map((f) => `${f.type}:${f.seq}`),
      ['reply.failed:1', 'reply.delta:2', 'reply.completed:3'],
    );
  });

  it('skips a stored tombstone (an event without a kind) when catching up from the store: no gap, no stall', async () => {
    const hub = newHub();
    const store = new Store();
    store.events.push(ev(1, 'r1', 'delta'), ev(2, 'r1', 'completed'), ev(3, 'r1'), ev(4, 'r2', 'delta'));
    const s = fakeSocket();
    const client = { ws: s.ws as any, owner: 'alice', session: 's', alive: true };
    hub.add(client);
    await hub.resume(client, 0, store);
    hub.publish(ev(5, 'r2', 'completed'));
    assert.deepEqual(
      s.frames.map((f) => `${f.type}:${f.seq}`),
      ['reply.delta:1', 'reply.completed:2', 'reply.delta:4', 'reply.completed:5'],
    );
  });
});
