import { getLogger } from '@chat/logger';
import { type BusStats, type EventBus, type EventRecord, type OutgoingEvent, type SubscribeOptions, type Subscription, type TopicSpec } from './bus.js';
import { deliver, StatsCounter } from './dead-letter.js';
import { claimGroup } from './groups.js';

interface Member {
  options: SubscribeOptions;
  chains: Map<string, Promise<void>>;
  stopped: boolean;
}

/**
 * InProcessBus is the event log inside one process: per-key order, consumer groups that share
 * events, redelivery of failed handlers. Valid only when every component runs in this process.
 */
export class InProcessBus implements EventBus {
  readonly kind = 'in-process' as const;
  private readonly groups = new Map<string, Map<string, Member[]>>(); // topic -> group -> members
  private readonly logger = getLogger('bus');
  private readonly groupTopics = new Map<string, string>();
  private readonly counters = new StatsCounter();

  async ensureTopics(_topics: TopicSpec[]): Promise<void> {}

  async publish(topic: string, events: OutgoingEvent[]): Promise<void> {
    const groups = this.groups.get(topic);
    if (!groups) return;
    for (const event of events) {
      const record: EventRecord = { topic, key: event.key, value: event.value, headers: { ...(event.headers ?? {}) } };
      for (const members of groups.values()) {
        const live = members.filter((m) => !m.stopped);
        if (live.length === 0) continue;
        const member = live[hash(event.key) % live.length]!;
        const prev = member.chains.get(event.key) ?? Promise.resolve();
        const next = prev
          .then(() => this.deliver(member, record))
          .catch((err: unknown) => {
            this.logger.warn('event left undelivered at stop', { topic, key: event.key, group: member.options.groupId, err });
          });
        member.chains.set(event.key, next);
        void next.then(() => {
          if (member.chains.get(event.key) === next) member.chains.delete(event.key);
        });
      }
    }
  }

  private deliver(member: Member, record: EventRecord): Promise<void> {
    return deliver(member.options, record, {
      publishDeadLetter: (topic, event) => this.publish(topic, [event]),
      stats: this.counters,
      logger: this.logger,
      stopping: () => member.stopped,
    });
  }

  stats(): BusStats {
    return this.counters.snapshot();
  }

  async subscribe(options: SubscribeOptions): Promise<Subscription> {
    claimGroup(this.groupTopics, options);
    const member: Member = { options, chains: new Map(), stopped: false };
    for (const topic of options.topics) {
      const groups = this.groups.get(topic) ?? new Map<string, Member[]>();
      this.groups.set(topic, groups);
      groups.set(options.groupId, [...(groups.get(options.groupId) ?? []), member]);
    }
    return {
      stop: async () => {
        member.stopped = true;
        await Promise.allSettled([...member.chains.values()]);
        for (const topic of options.topics) {
          const groups = this.groups.get(topic);
          const left = (groups?.get(options.groupId) ?? []).filter((m) => m !== member);
          if (left.length) groups?.set(options.groupId, left);
          else groups?.delete(options.groupId);
        }
      },
      crashed: new Promise<never>(() => {}),
    };
  }

  async close(): Promise<void> {
    this.groups.clear();
  }
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
