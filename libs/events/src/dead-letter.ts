import { randomUUID } from 'node:crypto';
import { Code, isAppError } from '@chat/errors';
import { redactText, type Logger } from '@chat/logger';
import { backoffMs, type BusStats, type EventRecord, type OutgoingEvent, type SubscribeOptions } from './bus.js';

/** DLT_SUFFIX names a topic's dead-letter topic: `<topic>.DLT`. */
export const DLT_SUFFIX = '.DLT';

/** dltTopic is the dead-letter topic of a topic. */
export function dltTopic(topic: string): string {
  return `${topic}${DLT_SUFFIX}`;
}

/** isDltTopic tells a dead-letter topic (which gets no dead-letter topic of its own). */
export function isDltTopic(topic: string): boolean {
  return topic.endsWith(DLT_SUFFIX);
}

/**
 * PermanentError marks a failure that redelivery cannot fix (e.g. a payload that does not decode):
 * the event goes to the dead-letter topic after this one attempt. `reason` becomes `dlt-code`.
 */
export class PermanentError extends Error {
  override readonly name = 'PermanentError';
  readonly reason: string;
  /**
   * Attempts the handler already made itself (a handler that owns its retries, like the
   * scheduler's): becomes `dlt-attempts` instead of the bus's own count of one.
   */
  readonly attempts: number | undefined;

  constructor(message: string, options: { reason?: string; cause?: unknown; attempts?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = options.reason ?? 'permanent';
    this.attempts = options.attempts;
  }
}

const PERMANENT_CODES = new Set<Code>([Code.InvalidArgument, Code.FailedPrecondition, Code.NotFound]);

/** isPermanent tells a handler failure that is not retried: a PermanentError, or an AppError InvalidArgument/FailedPrecondition/NotFound. */
export function isPermanent(err: unknown): boolean {
  if (err instanceof PermanentError || (err instanceof Error && err.name === 'PermanentError')) return true;
  return isAppError(err) && PERMANENT_CODES.has(err.code);
}

/** Dead-letter headers added to the original event's headers. */
export const DltHeaders = {
  /** A unique id of this dead letter (for listing and replaying it). */
  id: 'dlt-id',
  cause: 'dlt-cause',
  code: 'dlt-code',
  attempts: 'dlt-attempts',
  group: 'dlt-group',
  originalTopic: 'dlt-original-topic',
  failedAt: 'dlt-failed-at',
  /** On a replay marker (an empty record on the `.DLT` topic): the id of the dead letter replayed. */
  replayedId: 'dlt-replayed-id',
  replayedAt: 'dlt-replayed-at',
  replayedBy: 'dlt-replayed-by',
} as const;

/** REPLAY_HEADER marks an event republished from a dead-letter topic; its value is the dead letter's id. */
export const REPLAY_HEADER = 'x-replay-of';

const MAX_CAUSE = 500;

/** deadLetterEvent is the original event (same key, value, headers) plus the `dlt-*` headers. */
export function deadLetterEvent(record: EventRecord, err: unknown, attempts: number, groupId: string, extra: Record<string, string> = {}): OutgoingEvent {
  const message = err instanceof Error ? err.message : String(err);
  const cause = redactText(message);
  // Duck-typed: a PermanentError may come from another copy of this module, or be a service's own
  // error class named PermanentError (one that must not import the bus).
  const perm = err instanceof Error && err.name === 'PermanentError' ? (err as Error & { reason?: unknown; attempts?: unknown }) : undefined;
  const code = isAppError(err) ? err.reason : typeof perm?.reason === 'string' && perm.reason ? perm.reason : 'internal';
  const own = typeof perm?.attempts === 'number' && perm.attempts > 0 ? perm.attempts : undefined;
  return {
    key: record.key,
    value: record.value,
    headers: {
      ...record.headers,
      ...extra,
      [DltHeaders.id]: randomUUID(),
      [DltHeaders.cause]: cause.length > MAX_CAUSE ? `${cause.slice(0, MAX_CAUSE - 1)}…` : cause,
      [DltHeaders.code]: code,
      [DltHeaders.attempts]: String(own ?? attempts),
      [DltHeaders.group]: groupId,
      [DltHeaders.originalTopic]: record.topic,
      [DltHeaders.failedAt]: new Date().toISOString(),
    },
  };
}

/** StatsCounter keeps a bus's BusStats. */
export class StatsCounter {
  private readonly deadLettered = new Map<string, number>();
  private readonly retries = new Map<string, number>();

  retried(topic: string): void {
    this.retries.set(topic, (this.retries.get(topic) ?? 0) + 1);
  }

  deadLetter(topic: string): void {
    this.deadLettered.set(topic, (this.deadLettered.get(topic) ?? 0) + 1);
  }

  snapshot(): BusStats {
    return { deadLettered: Object.fromEntries(this.deadLettered), retries: Object.fromEntries(this.retries) };
  }
}

/** DeliveryDeps are what `deliver` needs from an adapter. */
export interface DeliveryDeps {
  /** Publishes to a dead-letter topic; a rejection is retried with backoff until it succeeds or the consumer stops. */
  publishDeadLetter(topic: string, event: OutgoingEvent): Promise<void>;
  stats: StatsCounter;
  logger: Logger;
  /** True once the subscription stops: an event that could not be dead-lettered yet is then left unacknowledged. */
  stopping(): boolean;
  /** Extra headers for the dead-letter copy (e.g. Kafka partition and offset). */
  extraHeaders?: Record<string, string>;
  /** Aborted when the event is no longer this consumer's (a revoked partition): like stopping. */
  signal?: AbortSignal;
}

const NEVER = new AbortController().signal;

/**
 * deliver runs the handler on one event with retries and backoff. After `maxAttempts` failures (one
 * for a permanent failure) it publishes the event to `<topic>.DLT` and resolves, so the consumer
 * moves on (commits); it never resolves before the dead-letter copy is written. It rejects only if
 * the subscription stops before that: the event is then not acknowledged and will be delivered again.
 */
export async function deliver(options: SubscribeOptions, record: EventRecord, deps: DeliveryDeps): Promise<void> {
  const max = Math.max(1, options.maxAttempts ?? 5);
  for (let attempt = 1; ; attempt++) {
    try {
      await options.handler(record, { signal: deps.signal ?? NEVER });
      return;
    } catch (err) {
      const permanent = isPermanent(err);
      if (deps.signal?.aborted) throw new Error('the event was revoked from this consumer (rebalance); another member delivers it', { cause: err });
      if (!permanent && deps.stopping()) {
        // Stopping: neither retried nor dead-lettered; left unacknowledged, delivered again later.
        throw new Error(`handler failed while the subscription stops; the event stays unacknowledged`, { cause: err });
      }
      if (!permanent && attempt < max) {
        deps.stats.retried(record.topic);
        await sleep(backoffMs(attempt));
        continue;
      }
      if (isDltTopic(record.topic)) {
        // A dead-letter topic has no dead-letter topic: its consumers' failures are logged and skipped.
        deps.logger.error('dead-letter event handler failed; event skipped', { topic: record.topic, key: record.key, group: options.groupId, attempts: attempt, err });
        return;
      }
      const event = deadLetterEvent(record, err, attempt, options.groupId, deps.extraHeaders);
      const target = dltTopic(record.topic);
      for (let tries = 1; ; tries++) {
        try {
          await deps.publishDeadLetter(target, event);
          break;
        } catch (publishErr) {
          if (deps.stopping()) throw new Error(`stopped before event could be dead-lettered to ${target}; it stays unacknowledged`, { cause: publishErr });
          deps.logger.warn('dead-letter publish failed; retrying', { topic: target, key: record.key, tries, err: publishErr });
          await sleep(backoffMs(tries, 200, 10_000));
        }
      }
      deps.stats.deadLetter(record.topic);
      deps.logger.error(permanent ? 'event failed permanently; dead-lettered' : 'event handler failed; dead-lettered', {
        topic: record.topic,
        dlt: target,
        key: record.key,
        group: options.groupId,
        attempts: attempt,
        err,
      });
      return;
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
