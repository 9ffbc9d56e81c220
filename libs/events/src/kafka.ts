import { Kafka, logLevel, type Consumer, type Message, type Producer, type LogEntry } from 'kafkajs';
import { getLogger } from '@chat/logger';
import { type BusStats, type EventBus, type EventRecord, type OutgoingEvent, type SubscribeOptions, type Subscription, type TopicSpec } from './bus.js';
import { deliver, DLT_SUFFIX, dltTopic, isDltTopic, StatsCounter } from './dead-letter.js';
import { claimGroup } from './groups.js';
import { PartitionDispatcher } from './partition-dispatch.js';

/** KafkaBusOptions configure the Kafka adapter. */
export interface KafkaBusOptions {
  brokers: string[];
  clientId: string;
  /** How long a fetch waits for data; kafkajs' default of 5 s would delay events by seconds. */
  maxWaitTimeMs?: number;
  /**
   * Prefix for every topic and consumer group name (`<namespace>.<name>`), so that several
   * deployments or test runs can share one cluster without seeing each other's events. Services
   * keep using the plain names: the prefix is added and removed here.
   */
  namespace?: string;
  /**
   * How long a rebalance waits for members to finish the events in hand and rejoin (default
   * 60 s). A handler may run for a long time (a streamed reply); a member that misses this bound
   * is dropped from the group and its events go to another member while it still works on them.
   */
  rebalanceTimeoutMs?: number;
}

/** Most publish calls that travel together in one produce request. */
const MAX_PUBLISHES_PER_REQUEST = 200;
/** Payload bytes after which no further publish call joins a produce request. */
const MAX_BATCH_BYTES = 256 * 1024;

/** How often a member heartbeats while a handler runs (kafkajs itself heartbeats only between events). */
const HEARTBEAT_MS = 1_000;

/**
 * KafkaBus is the event log on Apache Kafka: an idempotent producer with one request in flight
 * (so retries never reorder a partition), consumers with short fetch waits, per-partition order.
 */
export class KafkaBus implements EventBus {
  readonly kind = 'kafka' as const;
  private readonly kafka: Kafka;
  private producer: Producer | undefined;
  private producerReady: Promise<Producer> | undefined;
  private readonly consumers = new Set<Consumer>();
  /** Groups of ephemeral subscriptions, deleted when their consumer stops. */
  private readonly ephemeralGroups = new Map<Consumer, string>();
  private readonly groupTopics = new Map<string, string>();
  private readonly logger = getLogger('bus');
  private readonly counters = new StatsCounter();
  private closing = false;
  /** Dead-letter topics known to exist (created on first use if `ensureTopics` did not). */
  private readonly dltReady = new Map<string, Promise<void>>();

  private readonly prefix: string;

  constructor(private readonly options: KafkaBusOptions) {
    if (options.namespace !== undefined && !/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,100}$/.test(options.namespace)) {
      throw new Error(`invalid Kafka namespace ${JSON.stringify(options.namespace)}: use letters, digits, '.', '_' and '-'`);
    }
    this.prefix = options.namespace ? `${options.namespace}.` : '';
    const log = this.logger;
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      connectionTimeout: 3_000,
      requestTimeout: 10_000,
      retry: { initialRetryTime: 100, retries: 8 },
      logLevel: logLevel.WARN,
      logCreator:
        () =>
        ({ level, log: entry }: LogEntry) => {
          const { message, ...rest } = entry;
          log.log(level === logLevel.ERROR ? 'error' : level === logLevel.WARN ? 'warn' : 'debug', `kafka: ${message}`, rest);
        },
    });
  }

  async ensureTopics(topics: TopicSpec[]): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const existing = new Set(await admin.listTopics());
      // Each topic gets its dead-letter topic beside it, with the same partition count.
      const wanted = new Map<string, TopicSpec>();
      for (const t of topics) {
        wanted.set(t.name, t);
        if (!isDltTopic(t.name) && !wanted.has(dltTopic(t.name))) wanted.set(dltTopic(t.name), { name: dltTopic(t.name), partitions: t.partitions });
      }
      const missing = [...wanted.values()].filter((t) => !existing.has(this.physical(t.name)));
      if (missing.length > 0) {
        await admin.createTopics({
          waitForLeaders: true,
          topics: missing.map((t) => ({ topic: this.physical(t.name), numPartitions: t.partitions, replicationFactor: -1 })),
        });
      }
    } finally {
      await admin.disconnect();
    }
  }

  /** physical is the name of a topic or group on the cluster (with the namespace prefix). */
  private physical(name: string): string {
    return this.prefix + name;
  }

  /** logical is the name services know (without the namespace prefix). */
  private logical(name: string): string {
    return this.prefix && name.startsWith(this.prefix) ? name.slice(this.prefix.length) : name;
  }

  private getProducer(): Promise<Producer> {
    this.producerReady ??= (async () => {
      const p = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
      await p.connect();
      this.producer = p;
      return p;
    })().catch((err: unknown) => {
      this.producerReady = undefined;
      throw err;
    });
    return this.producerReady;
  }

  /**
   * publish sends events and resolves once the broker acknowledged them. The first publish goes at
   * once; publishes made while a send is in flight wait for it and then go together, in call
   * order, as one produce request (`sendBatch`): one broker round trip for many callers instead of
   * one each (the producer has one request in flight, so they would queue anyway). Each caller
   * learns the outcome of the request that carried its events.
   */
  async publish(topic: string, events: OutgoingEvent[]): Promise<void> {
    if (events.length === 0) return;
    const messages = events.map((e) => ({ key: e.key, value: Buffer.from(e.value), headers: e.headers }));
    await new Promise<void>((resolve, reject) => {
      this.sendQueue.push({ topic: this.physical(topic), messages, resolve, reject });
      if (!this.sending) void this.pumpSends();
    });
  }

  private readonly sendQueue: Array<{ topic: string; messages: Message[]; resolve: () => void; reject: (err: unknown) => void }> = [];
  private sending = false;

  private async pumpSends(): Promise<void> {
    this.sending = true;
    try {
      while (this.sendQueue.length > 0) {
        // Bounded by count and size (the broker refuses a request above its message size limit).
        let n = 0;
        let bytes = 0;
        while (n < this.sendQueue.length && n < MAX_PUBLISHES_PER_REQUEST && (n === 0 || bytes < MAX_BATCH_BYTES)) {
          bytes += this.sendQueue[n]!.messages.reduce((sum, m) => sum + (m.value as Buffer).length, 0);
          n++;
        }
        const batch = this.sendQueue.splice(0, n);
        try {
          const producer = await this.getProducer();
          // One entry per topic, in call order: a partition's messages keep the order they were published in.
          const byTopic = new Map<string, Message[]>();
          for (const b of batch) {
            const list = byTopic.get(b.topic);
            if (list) list.push(...b.messages);
            else byTopic.set(b.topic, [...b.messages]);
          }
          await producer.sendBatch({ topicMessages: [...byTopic].map(([t, messages]) => ({ topic: t, messages })) });
          for (const b of batch) b.resolve();
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.sending = false;
    }
  }

  /** publishDeadLetter writes one event to a dead-letter topic, creating it beside its topic if it is missing. */
  private async publishDeadLetter(target: string, event: OutgoingEvent): Promise<void> {
    let ready = this.dltReady.get(target);
    if (!ready) {
      ready = this.ensureDeadLetterTopic(target.slice(0, -DLT_SUFFIX.length));
      this.dltReady.set(target, ready);
      ready.catch(() => this.dltReady.delete(target));
    }
    await ready;
    await this.publish(target, [event]);
  }

  /**
   * startAtEnd commits the current end of each topic for a group that has committed nothing there
   * yet, so a live consumer (`fromBeginning: false`) starts exactly there and gets every event
   * published after subscribe() resolved. Left to kafkajs, a new group looks the end up only at its
   * first fetch, after the join: an event published in between was never delivered to it.
   */
  private async startAtEnd(groupId: string, topics: string[]): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      // A topic created a moment ago may have no partition leader yet (NOT_LEADER_FOR_PARTITION,
      // LEADER_NOT_AVAILABLE): retriable errors are tried again for up to 30 s.
      const until = Date.now() + 30_000;
      for (let attempt = 1; ; attempt++) {
        try {
          for (const committed of await admin.fetchOffsets({ groupId, topics })) {
            if (committed.partitions.some((p) => p.offset !== '-1')) continue;
            const end = await admin.fetchTopicOffsets(committed.topic);
            await admin.setOffsets({ groupId, topic: committed.topic, partitions: end.map((p) => ({ partition: p.partition, offset: p.offset })) });
          }
          return;
        } catch (err) {
          const e = err as { retriable?: boolean; name?: string; cause?: { retriable?: boolean } };
          const retriable = e.retriable || e.cause?.retriable || e.name === 'KafkaJSNumberOfRetriesExceeded';
          if (!retriable || Date.now() >= until) throw err;
          this.logger.info('the end of a topic is not known yet; trying again', { group: groupId, attempt, err: (err as Error).message });
          await new Promise((r) => setTimeout(r, Math.min(1_000, 100 * attempt)));
        }
      }
    } finally {
      await admin.disconnect();
    }
  }

  private async ensureDeadLetterTopic(topic: string): Promise<void> {
    const admin = this.kafka.admin();
    await admin.connect();
    let partitions: number;
    try {
      const meta = await admin.fetchTopicMetadata({ topics: [this.physical(topic)] });
      partitions = meta.topics[0]?.partitions.length || 1;
    } finally {
      await admin.disconnect();
    }
    await this.ensureTopics([{ name: topic, partitions }]);
  }

  stats(): BusStats {
    return this.counters.snapshot();
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    claimGroup(this.groupTopics, options);
    const consumer = this.kafka.consumer({
      groupId: this.physical(options.groupId),
      maxWaitTimeInMs: this.options.maxWaitTimeMs ?? 20,
      sessionTimeout: 10_000,
      heartbeatInterval: HEARTBEAT_MS,
      rebalanceTimeout: this.options.rebalanceTimeoutMs ?? 60_000,
      allowAutoTopicCreation: false,
    });
    this.consumers.add(consumer);
    let rejectCrash!: (err: Error) => void;
    const crashed = new Promise<never>((_, reject) => {
      rejectCrash = reject;
    });
    crashed.catch(() => {});
    consumer.on(consumer.events.CRASH, (e) => {
      if (!e.payload.restart) rejectCrash(e.payload.error);
    });
    const concurrency = Math.max(1, options.concurrency ?? 1);
    const dispatcher =
      concurrency > 1
        ? new PartitionDispatcher(concurrency, (topic, partition, offset) => consumer.commitOffsets([{ topic, partition, offset }]), this.logger)
        : undefined;
    // Ready means partitions are assigned: a consumer that has not joined yet would miss live events.
    const joined = new Promise<void>((resolve) =>
      consumer.on(consumer.events.GROUP_JOIN, (e) => {
        dispatcher?.assigned(e.payload.memberAssignment);
        try {
          options.onAssignment?.();
        } catch (err) {
          this.logger.error('onAssignment callback failed', { group: options.groupId, err });
        }
        resolve();
      }),
    );
    if (options.fromBeginning === false) await this.startAtEnd(this.physical(options.groupId), options.topics.map((t) => this.physical(t)));
    await consumer.connect();
    for (const topic of options.topics) await consumer.subscribe({ topic: this.physical(topic), fromBeginning: options.fromBeginning ?? true });
    let stopping = false;
    await consumer.run({
      partitionsConsumedConcurrently: 8,
      // With concurrency above 1, offsets are committed by the dispatcher (oldest unhandled event).
      autoCommit: !dispatcher,
      // Resolves once the event is handled or dead-lettered; the offset is committed only then.
      eachMessage: async ({ topic, partition, message, heartbeat }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) if (v !== undefined) headers[k] = Array.isArray(v) ? String(v[0]) : String(v);
        const record: EventRecord = { topic: this.logical(topic), key: message.key?.toString() ?? '', value: message.value ?? new Uint8Array(), headers };
        if (dispatcher) {
          // Not started while stopping: left uncommitted, delivered again.
          if (stopping || this.closing) return;
          await dispatcher.dispatch(
            topic,
            partition,
            message.offset,
            record.key,
            (signal) =>
              deliver(options, record, {
                publishDeadLetter: (target, event) => this.publishDeadLetter(target, event),
                stats: this.counters,
                logger: this.logger,
                stopping: () => stopping || this.closing || signal.aborted,
                extraHeaders: { 'dlt-original-partition': String(partition), 'dlt-original-offset': message.offset },
                signal,
              }),
            () => void heartbeat().catch(() => undefined),
          );
          return;
        }
        // kafkajs heartbeats only between events: without this, a handler running longer than the
        // session timeout (a long reply) gets the member dropped and its event delivered again.
        // A heartbeat refused during a rebalance is ignored here; kafkajs rejoins after the event.
        const beat = setInterval(() => void heartbeat().catch(() => undefined), HEARTBEAT_MS);
        try {
          await deliver(options, record, {
            publishDeadLetter: (target, event) => this.publishDeadLetter(target, event),
            stats: this.counters,
            logger: this.logger,
            stopping: () => stopping || this.closing,
            extraHeaders: { 'dlt-original-partition': String(partition), 'dlt-original-offset': message.offset },
          });
        } finally {
          clearInterval(beat);
        }
      },
    });
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      joined,
      new Promise<void>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`consumer group ${options.groupId} did not join within 30 s`)), 30_000);
      }),
    ]).finally(() => clearTimeout(timer));
    if (options.ephemeral) this.ephemeralGroups.set(consumer, this.physical(options.groupId));
    return {
      stop: async () => {
        stopping = true;
        // Events in progress finish (and their offsets are committed) before the member leaves.
        await dispatcher?.drain();
        this.consumers.delete(consumer);
        await consumer.disconnect();
        await this.deleteEphemeralGroup(consumer);
      },
      crashed,
    };
  }

  /** deleteEphemeralGroup deletes the group of an ephemeral subscription whose member has left (best effort: logged). */
  private async deleteEphemeralGroup(consumer: Consumer): Promise<void> {
    const group = this.ephemeralGroups.get(consumer);
    if (!group) return;
    this.ephemeralGroups.delete(consumer);
    const admin = this.kafka.admin();
    try {
      await admin.connect();
      await admin.deleteGroups([group]);
    } catch (err) {
      this.logger.warn('could not delete an ephemeral consumer group; it expires with the offsets retention', { group, err });
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    this.closing = true;
    const consumers = [...this.consumers];
    await Promise.allSettled(consumers.map((c) => c.disconnect()));
    this.consumers.clear();
    await Promise.allSettled(consumers.map((c) => this.deleteEphemeralGroup(c)));
    if (this.producer) await this.producer.disconnect();
    this.producer = undefined;
    this.producerReady = undefined;
  }
}
