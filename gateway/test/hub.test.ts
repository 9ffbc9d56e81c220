import assert from 'node:assert/strict';
import { eventsV1 } from '@chat/contracts';
import { getLogger } from '@chat/logger';
import { SocketHub } from '../src/ws/hub.js';
import './harness.js';

function fakeSocket(bufferedAmount = 0) {
  const sent: string[] = [];
  const closed: Array<[number, string]> = [];
  const ws = { readyState: 1, bufferedAmount, send: (d: string) => sent.push(d), close: (c: number, r: string) => closed.push([c, r]) };
  return { ws, sent, closed };
}

const delta = (session: string, seq: number) =>
  eventsV1.ReplyEvent.fromPartial({ sessionId: session, replyId: 'r', ownerId: 'alice', seq, kind: { $case: 'delta', value: { text: String(seq) } } });

describe('socket hub', () => {
  const hub = () => new SocketHub({ logger: getLogger('hub-test'), maxBufferedBytes: 1024 * 1024, heartbeatMs: 60_000, historyPerSession: 3 });

  it('closes a slow client with 1013 and a reason instead of buffering more', () => {
    const h = hub();
    const s = fakeSocket(2 * 1024 * 1024);
    h.send({ ws: s.ws as any, owner: 'alice', session: 's', alive: true }, { type: 'pong' });
    assert.equal(s.sent.length, 0);
    assert.equal(s.closed[0]![0], 1013);
    assert.ok(s.closed[0]![1].length > 0);
  });

  it('does not send a session’s events to a socket of another owner', () => {
    const h = hub();
    const s = fakeSocket();
    h.add({ ws: s.ws as any, owner: 'mallory', session: 's', alive: true });
    h.publish(delta('s', 1));
    assert.equal(s.sent.length, 0);
  });

  it('keeps only the most recent frames per session and says when a resume has a gap', () => {
    const h = hub();
    for (let seq = 1; seq <= 5; seq++) h.publish(delta('s', seq));
    const full = h.replay('s', 2);
    assert.deepEqual(full.frames.map((f) => f.seq), [3, 4, 5]);
    assert.equal(full.complete, true);
    const gap = h.replay('s', 0);
    assert.equal(gap.complete, false);
    assert.deepEqual(h.replay('s', 5), { frames: [], complete: true });
    assert.equal(h.replay('unknown', 0, 4).complete, false);
    assert.equal(h.replay('unknown', 0).complete, true);
  });
});
