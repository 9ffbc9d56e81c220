import { randomUUID } from 'node:crypto';
import { eventsV1, type schedulerV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import { DLT_SUFFIX, DltHeaders, dltTopic, REPLAY_HEADER, Topics, type EventBus, type EventRecord, type Subscription } from '@chat/events';
import type { Logger } from '@chat/logger';

/** The headers a replayed event does not carry over from its dead letter. */
const DROP_ON_REPLAY = /^dlt-/;

interface Entry {
  letter: schedulerV1.DeadLetter;
  /** The original event as it was dead-lettered (value and headers without dlt-*). */
  value: Uint8Array;
  headers: Record<string, string>;
}

/** ListOptions page the dead letters. */
export interface ListOptions {
  topic?: string;
  pageSize?: number;
  pageToken?: string;
  includeReplayed?: boolean;
}

function timestamp(iso: string | undefined): Date | undefined {
  if (!iso) return undefined;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? undefined : d;
}

/**
 * DeadLetterIndex reads every `<topic>.DLT` of the mesh from the beginning (a consumer group of its
 * own per process, so every replica knows every dead letter) and keeps the newest ones in memory
 * for the admin API. A replay republishes the original event to its topic with `x-replay-of` and
 * appends a replay marker (an empty record with `dlt-replayed-*` headers) to the `.DLT` topic, so
 * every replica, and this one after a restart, sees it as replayed.
 */
export class DeadLetterIndex {
  private readonly entries = new Map<string, Entry>();
  private readonly replayed = new Map<string, { at: Date; by: string }>();
  private subscription: Subscription | undefined;

  constructor(
    private readonly bus: EventBus,
    private readonly logger: Logger,
    private readonly max: number,
    private readonly topics: readonly string[] = Object.values(Topics),
  ) {}

  /** start subscribes to the dead-letter topics; crashed rejects if that consumer dies. */
  async start(): Promise<Subscription> {
    this.subscription = await this.bus.subscribe({
      topics: this.topics.map(dltTopic),
      groupId: `scheduler.dead-letters.${randomUUID().slice(0, 12)}`,
      fromBeginning: true,
      handler: async (record) => this.add(record),
    });
    return this.subscription;
  }

  /** add records one record of a `.DLT` topic: a dead letter or a replay marker. */
  add(record: EventRecord): void {
    const h = record.headers;
    const replayedId = h[DltHeaders.replayedId];
    if (replayedId) {
      const mark = { at: timestamp(h[DltHeaders.replayedAt]) ?? new Date(), by: h[DltHeaders.replayedBy] ?? '' };
      this.replayed.set(replayedId, mark);
      const e = this.entries.get(replayedId);
      if (e) Object.assign(e.letter, { replayed: true, replayedAt: mark.at, replayedBy: mark.by });
      return;
    }
    const id = h[DltHeaders.id];
    if (!id) {
      this.logger.warn('dead letter without an id skipped by the index', { topic: record.topic, key: record.key });
      return;
    }
    if (this.entries.has(id)) return;
    const topic = h[DltHeaders.originalTopic] ?? (record.topic.endsWith(DLT_SUFFIX) ? record.topic.slice(0, -DLT_SUFFIX.length) : record.topic);
    const letter: schedulerV1.DeadLetter = {
      id,
      topic,
      key: record.key,
      eventType: h['event-type'] ?? '',
      code: h[DltHeaders.code] ?? '',
      cause: h[DltHeaders.cause] ?? '',
      attempts: Number(h[DltHeaders.attempts] ?? 0) || 0,
      group: h[DltHeaders.group] ?? '',
      failedAt: timestamp(h[DltHeaders.failedAt]),
      sessionId: '',
      messageId: '',
      replyId: '',
      ownerId: '',
      replayed: false,
      replayedAt: undefined,
      replayedBy: '',
      originalPartition: h['dlt-original-partition'] !== undefined ? Number(h['dlt-original-partition']) : -1,
      originalOffset: h['dlt-original-offset'] !== undefined ? Number(h['dlt-original-offset']) : -1,
    };
    if (topic === Topics.messages) {
      try {
        const m = eventsV1.MessageCreated.decode(record.value);
        Object.assign(letter, { sessionId: m.sessionId, messageId: m.messageId, replyId: m.replyId, ownerId: m.ownerId });
      } catch {
        // An undecodable message is listed as it is (its code says so).
      }
    }
    const mark = this.replayed.get(id);
    if (mark) Object.assign(letter, { replayed: true, replayedAt: mark.at, replayedBy: mark.by });
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(h)) if (!DROP_ON_REPLAY.test(k)) headers[k] = v;
    this.entries.set(id, { letter, value: record.value, headers });
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string);
  }

  /** list pages the dead letters newest first; pageToken is the id the previous page ended after. */
  list(options: ListOptions = {}): { deadLetters: schedulerV1.DeadLetter[]; nextPageToken: string } {
    const size = Math.min(Math.max(options.pageSize || 50, 1), 500);
    const all = [...this.entries.values()].reverse().filter((e) => (!options.topic || e.letter.topic === options.topic) && (options.includeReplayed || !e.letter.replayed));
    let start = 0;
    if (options.pageToken) {
      const i = all.findIndex((e) => e.letter.id === options.pageToken);
      if (i < 0) throw AppError.invalid('page_token is not valid (the list changed, or it is not a dead letter id)', { page_token: 'is not valid' });
      start = i + 1;
    }
    const page = all.slice(start, start + size);
    const more = start + size < all.length;
    return { deadLetters: page.map((e) => ({ ...e.letter })), nextPageToken: more && page.length ? page[page.length - 1]!.letter.id : '' };
  }

  /** get returns one dead letter. */
  get(id: string): schedulerV1.DeadLetter | undefined {
    const e = this.entries.get(id);
    return e ? { ...e.letter } : undefined;
  }

  /**
   * replay republishes the original event to its topic (same key and value, the original headers
   * plus `x-replay-of`), then records the replay on the `.DLT` topic. A dead letter replays once.
   */
  async replay(id: string, by: string): Promise<schedulerV1.DeadLetter> {
    const e = this.entries.get(id);
    if (!e) throw AppError.notFound('dead letter', id);
    if (e.letter.replayed) {
      throw new AppError(Code.FailedPrecondition, `dead letter ${id} was already replayed`, {
        reason: 'already_replayed',
        details: { id, replayed_at: e.letter.replayedAt?.toISOString() ?? '', replayed_by: e.letter.replayedBy },
      });
    }
    const at = new Date();
    // Mark first, in memory: a second request racing this one is refused.
    Object.assign(e.letter, { replayed: true, replayedAt: at, replayedBy: by });
    try {
      await this.bus.publish(e.letter.topic, [{ key: e.letter.key, value: e.value, headers: { ...e.headers, [REPLAY_HEADER]: id } }]);
    } catch (err) {
      Object.assign(e.letter, { replayed: false, replayedAt: undefined, replayedBy: '' });
      throw AppError.unavailable(`the dead letter could not be republished to ${e.letter.topic}`, err);
    }
    this.replayed.set(id, { at, by });
    try {
      await this.bus.publish(dltTopic(e.letter.topic), [
        { key: e.letter.key, value: new Uint8Array(), headers: { [DltHeaders.replayedId]: id, [DltHeaders.replayedAt]: at.toISOString(), [DltHeaders.replayedBy]: by } },
      ]);
    } catch (err) {
      // The event is republished; only other replicas' (or a restarted replica's) view lags.
      this.logger.warn('replay marker could not be written to the dead-letter topic', { id, err });
    }
    this.logger.info('dead letter replayed', { id, topic: e.letter.topic, key: e.letter.key, by });
    return { ...e.letter };
  }

  async stop(): Promise<void> {
    await this.subscription?.stop();
  }
}
