import type { eventsV1 } from '@chat/contracts';

/**
 * ReplyPublisher sends one reply's events in order without waiting for the log on every token:
 * while one publish is in flight, later events gather and go together in the next one.
 */
export class ReplyPublisher {
  private pending: eventsV1.ReplyEvent[] = [];
  private flushing: Promise<void> | undefined;
  private failure: unknown;

  constructor(
    private readonly sessionId: string,
    private readonly send: (sessionId: string, events: eventsV1.ReplyEvent[]) => Promise<void>,
  ) {}

  /** push queues an event; a publish failure surfaces at the next push or at flush. */
  push(event: eventsV1.ReplyEvent): void {
    if (this.failure) throw this.failure;
    this.pending.push(event);
    this.flushing ??= this.loop();
  }

  private async loop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        await this.send(this.sessionId, batch);
      }
    } catch (err) {
      this.failure = err;
    } finally {
      this.flushing = undefined;
    }
  }

  /** flush resolves when every pushed event is published, or rejects with the publish error. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.failure) throw this.failure;
  }
}
