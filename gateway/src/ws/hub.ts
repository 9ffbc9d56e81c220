import type { Logger } from '@chat/logger';
import type { eventsV1 } from '@chat/contracts';
import { WebSocket } from 'ws';
import { replyFrame, type ReplyFrame } from './frames.js';

/** One open WebSocket of one owner on one session. */
export interface Client {
  ws: WebSocket;
  owner: string;
  session: string;
  alive: boolean;
}

export interface HubOptions {
  logger: Logger;
  /** bufferedAmount above which a slow client is closed with 1013. */
  maxBufferedBytes: number;
  heartbeatMs: number;
  /** Reply frames kept per session for `resume`. */
  historyPerSession?: number;
  /** Sessions whose recent frames are kept (least recently used go first). */
  historySessions?: number;
}

/**
 * SocketHub knows every open socket per session, fans reply events out to them, keeps a ring
 * buffer of each session's recent reply frames for `resume`, and runs heartbeats.
 */
export class SocketHub {
  private readonly bySession = new Map<string, Set<Client>>();
  private readonly history = new Map<string, ReplyFrame[]>();
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(private readonly options: HubOptions) {}

  get size(): number {
    let n = 0;
    for (const set of this.bySession.values()) n += set.size;
    return n;
  }

  add(client: Client): void {
    const set = this.bySession.get(client.session) ?? new Set<Client>();
    set.add(client);
    this.bySession.set(client.session, set);
  }

  remove(client: Client): void {
    const set = this.bySession.get(client.session);
    if (!set) return;
    set.delete(client);
    if (set.size === 0) this.bySession.delete(client.session);
  }

  /** send writes one frame, closing the socket with 1013 when the client does not keep up. */
  send(client: Client, frame: object): void {
    const { ws } = client;
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > this.options.maxBufferedBytes) {
      this.options.logger.warn('closing a slow websocket client', { session: client.session, buffered_bytes: ws.bufferedAmount });
      ws.close(1013, 'client too slow; reconnect and resume');
      return;
    }
    ws.send(JSON.stringify(frame));
  }

  /** publish records a reply event and sends its frame to every open socket of its session. */
  publish(event: eventsV1.ReplyEvent): void {
    const frame = replyFrame(event);
    if (!frame || !event.sessionId) return;
    if (!this.remember(event.sessionId, frame)) return; // a redelivered event: already sent
    for (const client of this.bySession.get(event.sessionId) ?? []) {
      if (event.ownerId && client.owner !== event.ownerId) continue;
      this.send(client, frame);
    }
  }

  /** remember appends to the session's ring buffer; false for a duplicate (seq already seen). */
  private remember(session: string, frame: ReplyFrame): boolean {
    const max = this.options.historyPerSession ?? 256;
    const frames = this.history.get(session) ?? [];
    const last = frames[frames.length - 1];
    if (frame.seq > 0 && last && frame.seq <= last.seq) return false;
    frames.push(frame);
    if (frames.length > max) frames.splice(0, frames.length - max);
    // Re-insert so the Map's order is least recently used first.
    this.history.delete(session);
    this.history.set(session, frames);
    const sessions = this.options.historySessions ?? 1000;
    while (this.history.size > sessions) this.history.delete(this.history.keys().next().value!);
    return true;
  }

  /**
   * replay returns the buffered frames after lastSeq and whether they are complete: complete
   * means the buffer reaches back to lastSeq + 1 (or nothing was missed, as far as known).
   */
  replay(session: string, lastSeq: number, knownLastSeq?: number): { frames: ReplyFrame[]; complete: boolean } {
    const frames = (this.history.get(session) ?? []).filter((f) => f.seq > lastSeq);
    const first = frames[0];
    const newest = Math.max(knownLastSeq ?? 0, frames[frames.length - 1]?.seq ?? 0);
    const complete = newest <= lastSeq || (first !== undefined && first.seq <= lastSeq + 1);
    return { frames, complete };
  }

  /** startHeartbeat pings every socket each period and terminates the ones that missed a pong. */
  startHeartbeat(): void {
    this.heartbeat ??= setInterval(() => {
      for (const set of this.bySession.values()) {
        for (const client of set) {
          if (!client.alive) {
            client.ws.terminate();
            continue;
          }
          client.alive = false;
          client.ws.ping();
        }
      }
    }, this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  /** closeAll closes every socket (1001 at shutdown) and terminates those that do not finish in graceMs. */
  async closeAll(code: number, reason: string, graceMs = 1_000): Promise<void> {
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
    const clients = [...this.bySession.values()].flatMap((s) => [...s]);
    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.ws.readyState === WebSocket.CLOSED) return resolve();
            const timer = setTimeout(() => {
              c.ws.terminate();
              resolve();
            }, graceMs);
            c.ws.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            c.ws.close(code, reason);
          }),
      ),
    );
    this.bySession.clear();
  }
}
