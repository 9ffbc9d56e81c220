import type { Logger } from '@chat/logger';

/**
 * PartitionDispatcher runs the events of Kafka partitions concurrently across keys, in order within
 * a key, and tells what offset is safe to commit: the oldest event not yet handled (at-least-once:
 * nothing after an unhandled event is committed). kafkajs hands a partition's events one at a time
 * and, on one broker, fetches nothing new until the events of a fetch are handled, so a handler
 * that runs for long (a streamed reply) would hold every partition of the member; this returns at
 * once and applies backpressure only when a partition has `limit` events in progress.
 */

type State = 'running' | 'done' | 'failed';

interface Partition {
  readonly key: string;
  /** Events seen since the last commit, by offset. */
  readonly known: Map<string, State>;
  /** The last event of each event key (the next one of that key runs after it). */
  readonly tails: Map<string, Promise<void>>;
  readonly controllers: Set<AbortController>;
  waiters: Array<() => void>;
  inFlight: number;
  revoked: boolean;
  committing: Promise<void>;
}

/** Commit writes the offset (the next one to read) of a partition. */
export type Commit = (topic: string, partition: number, offset: string) => Promise<void>;

export class PartitionDispatcher {
  private readonly partitions = new Map<string, Partition>();

  constructor(
    private readonly limit: number,
    private readonly commit: Commit,
    private readonly logger: Logger,
  ) {}

  private id(topic: string, partition: number): string {
    return `${topic}\u0000${partition}`;
  }

  private get(topic: string, partition: number): Partition {
    const key = this.id(topic, partition);
    let p = this.partitions.get(key);
    if (!p || p.revoked) {
      p = { key, known: new Map(), tails: new Map(), controllers: new Set(), waiters: [], inFlight: 0, revoked: false, committing: Promise.resolve() };
      this.partitions.set(key, p);
    }
    return p;
  }

  /**
   * dispatch starts one event (after the earlier events of its key) and resolves once it started
   * (or was skipped as already seen), not when it is handled. `run` gets a signal that aborts when
   * the partition is revoked; it must reject only when the event is not to be acknowledged.
   */
  async dispatch(topic: string, partition: number, offset: string, eventKey: string, run: (signal: AbortSignal) => Promise<void>, whileWaiting: () => void): Promise<void> {
    const p = this.get(topic, partition);
    // Fetched again after a rejoin while still in progress, or handled but not committed yet. One
    // left unacknowledged ('failed': the member was stopping or lost the partition) runs again.
    if (this.seen(p, offset)) return;
    while (p.inFlight >= this.limit) {
      const beat = setInterval(whileWaiting, 1_000);
      try {
        await new Promise<void>((resolve) => p.waiters.push(resolve));
      } finally {
        clearInterval(beat);
      }
      // The partition went to another member while this event waited: it is that member's now
      // (nothing of it is committed here). Running it here too would handle it twice.
      if (p.revoked) return;
      if (this.seen(p, offset)) return;
    }
    p.known.set(offset, 'running');
    p.inFlight++;
    const ac = new AbortController();
    p.controllers.add(ac);
    const part = p;
    const previous = part.tails.get(eventKey) ?? Promise.resolve();
    const tail = previous
      .then(() => (ac.signal.aborted ? Promise.reject(new Error('partition revoked')) : run(ac.signal)))
      .then(
        () => void part.known.set(offset, 'done'),
        (err: unknown) => {
          part.known.set(offset, 'failed');
          if (!ac.signal.aborted) this.logger.warn('event left unacknowledged', { topic, partition, offset, err });
        },
      )
      .finally(() => {
        part.inFlight--;
        part.controllers.delete(ac);
        if (part.tails.get(eventKey) === tail) part.tails.delete(eventKey);
        part.waiters.shift()?.();
        if (!part.revoked) part.committing = part.committing.then(() => this.commitUpTo(topic, partition, part));
      });
    part.tails.set(eventKey, tail);
  }

  private seen(p: Partition, offset: string): boolean {
    const state = p.known.get(offset);
    return state === 'running' || state === 'done';
  }

  /** commitUpTo commits the offset of the oldest event not handled (or the one after the last handled). */
  private async commitUpTo(topic: string, partition: number, p: Partition): Promise<void> {
    const offsets = [...p.known.keys()].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : BigInt(a) > BigInt(b) ? 1 : 0));
    let next: bigint | undefined;
    for (const o of offsets) {
      if (p.known.get(o) !== 'done') break;
      next = BigInt(o) + 1n;
    }
    if (next === undefined || p.revoked) return;
    try {
      await this.commit(topic, partition, next.toString());
      for (const o of offsets) if (BigInt(o) < next) p.known.delete(o);
    } catch (err) {
      // A commit refused during a rebalance: the events are delivered again (handlers are idempotent).
      this.logger.warn('offset commit failed; the events after the last commit may be delivered again', { topic, partition, offset: next.toString(), err });
    }
  }

  /** assigned records the member's partitions after a (re)join: events of the others in progress are aborted. */
  assigned(assignment: Record<string, number[]>): void {
    const keep = new Set<string>();
    for (const [topic, parts] of Object.entries(assignment)) for (const n of parts) keep.add(this.id(topic, n));
    for (const [key, p] of this.partitions) {
      if (keep.has(key)) continue;
      p.revoked = true;
      for (const c of p.controllers) c.abort();
      for (const w of p.waiters.splice(0)) w();
      this.partitions.delete(key);
    }
  }

  /** drain waits until every event in progress is handled (or left) and its commit written. */
  async drain(): Promise<void> {
    for (;;) {
      const parts = [...this.partitions.values()];
      const tails = parts.flatMap((p) => [...p.tails.values()]);
      if (tails.length === 0) {
        await Promise.all(parts.map((p) => p.committing));
        return;
      }
      await Promise.allSettled(tails);
    }
  }

  /** inFlight counts the events in progress (for tests and diagnostics). */
  get inFlight(): number {
    let n = 0;
    for (const p of this.partitions.values()) n += p.inFlight;
    return n;
  }
}
