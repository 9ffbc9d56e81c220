import { randomBytes } from 'node:crypto';

/** EventRecord is one event as a consumer sees it. */
export interface EventRecord {
  topic: string;
  key: string;
  value: Uint8Array;
  headers: Record<string, string>;
}

/** OutgoingEvent is one event to publish; key decides ordering (same key, same order). */
export interface OutgoingEvent {
  key: string;
  value: Uint8Array;
  headers?: Record<string, string>;
}

/** SubscribeOptions describe one consumer of a topic. */
export interface SubscribeOptions {
  topics: string[];
  /** Consumers with the same group share the events; each group gets every event once. */
  groupId: string;
  /**
   * Called one event at a time per key; a rejection is retried with backoff. A permanent failure
   * (see `isPermanent`, e.g. a `PermanentError` for an undecodable payload) is not retried.
   */
  handler: (event: EventRecord, context: DeliveryContext) => Promise<void>;
  /**
   * Kafka: events of one partition in progress at once (default 1: each event is handled before
   * the next is given out). Above 1, events of different keys run concurrently and each key's
   * events stay in order; offsets are committed up to the oldest event not yet handled; a member
   * that loses a partition in a rebalance aborts the events of it in progress (`context.signal`).
   * The in-process bus always runs different keys concurrently.
   */
  concurrency?: number;
  /**
   * Attempts before an event is given up on: it is then published to `<topic>.DLT` (see
   * `dltTopic`) with the cause in `dlt-*` headers, and the consumer moves on.
   */
  maxAttempts?: number;
  /**
   * Where a group that has never committed starts: true (the default) reads everything still in the
   * log, so events published before a service's first start are not lost; false (live views such as
   * a gateway's socket fan-out) starts at the end as of subscribe(): every event published after it
   * resolved is delivered.
   */
  fromBeginning?: boolean;
  /**
   * The group belongs to this one subscription (a gateway's per-instance live fan-out): on Kafka,
   * stop() and close() delete the consumer group after the member leaves, so restarts do not leave
   * groups behind (a crashed process's group still expires with the broker's offsets retention).
   * The in-process bus has no groups to delete. docs/decisions/0019.
   */
  ephemeral?: boolean;
  /**
   * Called when this member's partitions may have changed (Kafka: after every join of the group,
   * before any event of the new assignment is handed out). A consumer that keeps state about the
   * keys it owns (the scheduler's RuntimeSessions) drops what another member may have changed
   * while it did not own them. The in-process bus has a single member and never calls it.
   */
  onAssignment?: () => void;
}

/** DeliveryContext comes with each event given to a handler. */
export interface DeliveryContext {
  /**
   * Aborted when this consumer no longer owns the event (its partition went to another member in a
   * rebalance): the other member delivers it again, so the handler should stop without side effects.
   */
  signal: AbortSignal;
}

/** Subscription is a running consumer. */
export interface Subscription {
  /** Stops taking new events and waits for the ones in progress. */
  stop(): Promise<void>;
  /** Rejects if the consumer dies and cannot recover. */
  crashed: Promise<never>;
}

/** TopicSpec names a topic and its partition count. */
export interface TopicSpec {
  name: string;
  partitions: number;
}

/**
 * BusStats are counters of one bus object since it was created (monotonic, for metrics), keyed by
 * the original topic (never the `.DLT` name): events dead-lettered, and failed handler attempts
 * that were retried.
 */
export interface BusStats {
  deadLettered: Record<string, number>;
  retries: Record<string, number>;
}

/** EventBus is the port every service uses for the event log: Kafka in production, in-process by default. */
export interface EventBus {
  readonly kind: 'kafka' | 'in-process';
  /** Creates the topics that do not exist yet, and the dead-letter topic `<name>.DLT` beside each. */
  ensureTopics(topics: TopicSpec[]): Promise<void>;
  publish(topic: string, events: OutgoingEvent[]): Promise<void>;
  subscribe(options: SubscribeOptions): Promise<Subscription>;
  close(): Promise<void>;
  /** Counters for metrics; optional so that stand-ins need not have it (read it with `busStats`). */
  stats?(): BusStats;
}

/** busStats reads a bus's counters; a bus without them counts nothing. */
export function busStats(bus: EventBus): BusStats {
  return bus.stats?.() ?? { deadLettered: {}, retries: {} };
}

/** Topics of the mesh. Keys: persona id for persona events, session id for the others. */
export const Topics = {
  personaEvents: 'chat.persona.events.v1',
  profileEvents: 'chat.profile.events.v1',
  messages: 'chat.messages.v1',
  replies: 'chat.replies.v1',
} as const;

/** backoffMs is exponential backoff with full jitter, capped. */
export function backoffMs(attempt: number, baseMs = 100, capMs = 5_000): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** (attempt - 1));
}

/** instanceGroupId is a consumer group id of this process alone: `<prefix>-<12 random hex digits>`. */
export function instanceGroupId(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

/**
 * subscribeLive subscribes this process alone to the events published from now on: a consumer
 * group of its own (`instanceGroupId(groupPrefix)`), starting at the end of the log, deleted at
 * stop (decision 0019). For per-process views and cache invalidation, where every process must
 * see every event (a shared group gives each event to one member only).
 */
export function subscribeLive(
  bus: EventBus,
  options: Omit<SubscribeOptions, 'groupId' | 'fromBeginning' | 'ephemeral'> & { groupPrefix: string },
): Promise<Subscription> {
  const { groupPrefix, ...rest } = options;
  return bus.subscribe({ ...rest, groupId: instanceGroupId(groupPrefix), fromBeginning: false, ephemeral: true });
}
