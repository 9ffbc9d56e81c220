import { eventsV1, ragV1, sessionV1, type personaV1 } from '@chat/contracts';
import { AppError, Code, toAppError } from '@chat/errors';
import type { Logger } from '@chat/logger';
import { ProfileLimiter, type ProfileLimits } from './limits.js';
import { priorityBucket, schedulerMetrics } from './metrics.js';
import { clampPriority, pickNext } from './policy.js';
import { ReplyPublisher } from './reply-publisher.js';
import type { SchedulerPorts } from './ports.js';
import { classify, interrupted, retryDelayMs, type RetryPolicy } from './retry.js';
import type { Summarizer } from './summarizer.js';
import { buildWindow, type Tokenizer, type WindowTurn } from './window.js';

/** SchedulerOptions tune the scheduler. Fields after knowledgeReserveTokens have defaults. */
export interface SchedulerOptions {
  /** The whole reply (every attempt and the waits between them) must finish within this. */
  replyTimeoutMs: number;
  idleEvictMs: number;
  /** Most uncovered messages read for the window (the token budget usually stops earlier). */
  windowMaxMessages: number;
  /** The prompt budget when a persona sets no history_budget_tokens. */
  defaultBudgetTokens: number;
  /** Tokens kept free for retrieved knowledge. */
  knowledgeReserveTokens: number;
  /** Each attempt must stream its first delta within this (default: replyTimeoutMs, i.e. no separate deadline). */
  firstTokenTimeoutMs?: number;
  /** Generations running at once in this replica, over every profile (default 64). */
  maxConcurrent?: number;
  /** Attempts and backoff of retryable failures (default 3 attempts, 500 ms base, 30 s cap). */
  retry?: RetryPolicy;
  /** A waiting message gains one priority level per agingMs (default 5000). */
  agingMs?: number;
  /** Limits of personas that use the default endpoint (no API profile); default none. */
  defaultLimits?: ProfileLimits;
  /** How long a profile's limits are cached (default 30 s). */
  profileCacheTtlMs?: number;
  /**
   * A message delivered again whose reply is stored `streaming` waits up to this long (polling the
   * session service) for the reply to become final before it is failed `reply_interrupted`: its
   * first run may have finished and published its final event that the session service has not
   * recorded yet (decision 0018). Default 5000; 0 = no wait.
   */
  redeliverySettleMs?: number;
  /** How often the settle wait asks the session service (default 250 ms). */
  redeliveryPollMs?: number;
  /** Replies this replica finalised that it remembers, to skip their messages delivered again (default 10 000). */
  finalisedMemory?: number;
  /**
   * On a rebalance, a running reply of a partition this replica lost may finish for this long
   * before it is aborted (decision 0018; keep it below the Kafka rebalance timeout). Default 45 000.
   */
  revokeGraceMs?: number;
  /**
   * How long a RuntimeSession keeps its persona (default 30 000; 0 = read it for every message).
   * Persona events drop it sooner (`personaChanged`); this bounds staleness if one is missed.
   */
  personaCacheTtlMs?: number;
  /** Keep each RuntimeSession's recent history between its messages (default true; decision 0020). */
  historyCache?: boolean;
}

/** PushOptions describe how a message reached the scheduler. */
export interface PushOptions {
  /** Set when an operator replayed the message from the dead-letter topic: the dead letter's id. */
  replayOf?: string;
  /**
   * Aborted when this replica no longer owns the message (its partition went to another replica in
   * a rebalance): the message is dropped here without a final event (the new owner delivers it
   * again; a reply that had streamed text is then failed there, never re-run).
   */
  signal?: AbortSignal;
}

/** PartitionRevoked rejects push() for a message whose partition this replica lost (not acknowledged). */
export class PartitionRevoked extends Error {
  override readonly name = 'PartitionRevoked';
  constructor() {
    super('the message was revoked from this replica (rebalance); its new owner handles it');
  }
}

/** SchedulerStopping rejects messages the scheduler gave back at shutdown: not acknowledged, delivered again later. */
export class SchedulerStopping extends Error {
  override readonly name = 'SchedulerStopping';
  constructor() {
    super('the scheduler is stopping; the message is left for redelivery');
  }
}

/**
 * ReplyGivenUp rejects push() when a reply failed for good (after its attempts, or at once for a
 * final cause) and its `reply.failed` is published: the bus then dead-letters the message at once
 * (the name makes it a permanent error for `isPermanent`), with the reason, cause and attempts.
 */
export class ReplyGivenUp extends Error {
  override readonly name = 'PermanentError';
  constructor(
    message: string,
    readonly reason: string,
    readonly attempts: number,
    cause: unknown,
  ) {
    super(message, { cause });
  }
}

/** Most personas a replica keeps (the oldest stored goes first). */
const PERSONA_CACHE_MAX = 10_000;

const FINAL = new Set([
  sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED,
  sessionV1.MessageStatus.MESSAGE_STATUS_FAILED,
  sessionV1.MessageStatus.MESSAGE_STATUS_CANCELLED,
]);

type Outcome = 'completed' | 'failed' | 'cancelled' | 'skipped';

interface Prepared {
  request: Partial<ragV1.GenerateRequest>;
  persona: personaV1.Persona;
  win: sessionV1.GetConversationWindowResponse;
  oldestKept: number | undefined;
  /**
   * Set when the model is called before the session was read back (a session's first message,
   * decision 0020): resolves true once the read shows the reply is new, false otherwise. Nothing of
   * the reply is published before it resolved true; false runs the message again the usual way.
   */
  confirm?: Promise<boolean>;
}

/** SpeculationRefused ends an attempt started before the read that then showed the reply is not new. */
class SpeculationRefused extends Error {
  override readonly name = 'SpeculationRefused';
}

/** Job is one message on its way through a RuntimeSession. */
type WindowResponse = Awaited<ReturnType<SchedulerPorts['getConversationWindow']>>;

interface Job {
  m: eventsV1.MessageCreated;
  replayOf?: string;
  priority: number;
  enqueuedAt: number;
  order: number;
  bucket: { priority: 'low' | 'normal' | 'high' };
  /** Counted in the queue-length gauge (waiting, not running). */
  waiting: boolean;
  running: boolean;
  resolving: boolean;
  profileKey?: string;
  limits?: ProfileLimits;
  persona?: personaV1.Persona;
  /** Not before this time (ms, Date.now): the backoff of a retry. */
  notBefore: number;
  attempt: number;
  /** Date.now() when the first attempt started, and the whole-reply deadline. */
  deadlineAt?: number;
  startedPerf?: number;
  streamed: boolean;
  cancelled: boolean;
  /** Finalized (its last event published or given up): nothing may touch it any more. */
  done: boolean;
  /** Its partition went to another replica: dropped without a final event. */
  revoked: boolean;
  /** Its partition went to another replica while it ran: it may finish, but is not retried. */
  revoking: boolean;
  controller?: AbortController;
  prepared?: Prepared;
  /** The conversation window, read while the persona is looked up (used once, by prepare). */
  windowRead?: Promise<WindowResponse>;
  /** Prepared on the session's history cache (read or kept): its outcome advances the cache. */
  tracked?: HistoryCache;
  /** The text of its completed reply (what the session service stores). */
  completedContent?: string;
  /** Its speculative start was refused: read the window before the model from now on. */
  noSpeculation?: boolean;
  publisher?: ReplyPublisher;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * HistoryCache is what a RuntimeSession knows of its session's conversation while this replica
 * owns the session (decision 0020): the last window read from the session service, and the turns
 * that ran here since. It stands for a read only while nobody else can have changed the session:
 * the same ownership epoch (no rebalance since), a message it has not seen yet, no summary stored
 * since, every earlier message of the session accounted for.
 */
interface HistoryCache {
  /** The scheduler's ownership epoch when it was read. */
  epoch: number;
  /** The window as read (summary, messages with their positions, older uncovered count). */
  base: WindowResponse;
  /** Turns that ran here since the read, oldest first (their positions are not known here). */
  appended: Array<{ role: 'user' | 'assistant'; content: string }>;
  /** Ids of the messages it covers: one of them delivered again is read, never assumed new. */
  seen: Set<string>;
  /** The newest creation time (ms) of the messages it covers: an older message is read, never assumed new. */
  newest: number;
}

/**
 * RuntimeSession is the sticky execution context of one active session in this replica (the
 * replica owns it through the partition of the session's key): a FIFO of its messages, at most one
 * of them running, the session's event sequence number, and its recent history (decision 0020;
 * its persona comes from the replica's persona cache). Idle ones are evicted with their caches.
 */
class RuntimeSession {
  /** The last seq published for this session; undefined until read from the session service. */
  seq: number | undefined;
  readonly queue: Job[] = [];
  lastActive = Date.now();
  history: HistoryCache | undefined;
  constructor(readonly id: string) {}
  get running(): boolean {
    return this.queue[0]?.running ?? false;
  }
}

/**
 * Scheduler runs user messages through RuntimeSessions and publishes the replies as events.
 * Across sessions it picks the next message by priority with aging (decision 0008), within a
 * replica-wide concurrency cap and per-profile concurrency and rate limits; it owns the retries
 * of a reply (decision 0009) and never re-runs a reply that already streamed text.
 */
export class Scheduler {
  private readonly sessions = new Map<string, RuntimeSession>();
  private readonly evictTimer: NodeJS.Timeout;
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private running = 0;
  private order = 0;
  private completed = 0;
  private failed = 0;
  private retries = 0;
  private deadLettered = 0;
  private stopping = false;
  private readonly limiter = new ProfileLimiter();
  private readonly profileCache = new Map<string, { limits: ProfileLimits; expiresAt: number }>();
  private readonly metrics = schedulerMetrics();
  private readonly retry: RetryPolicy;
  private readonly maxConcurrent: number;
  private readonly agingMs: number;
  private readonly firstTokenTimeoutMs: number;
  /**
   * Replies this replica finalised (their last event is on the log), least recently used first: a
   * message of one of them delivered again (an outbox re-publish, an offset commit lost to a broker
   * restart) publishes nothing new (decision 0018).
   */
  private readonly finalised = new Map<string, Outcome>();
  /** Bumped when this replica's partitions may have changed: history caches of an older epoch are stale. */
  private epoch = 0;
  /** Bumped by every persona change: a persona read that started before one is not cached. */
  private personaGeneration = 0;
  /** Personas by owner and id, shared by the RuntimeSessions (decision 0020), least recently stored first. */
  private readonly personas = new Map<string, { value: personaV1.Persona; expiresAt: number }>();

  constructor(
    private readonly ports: SchedulerPorts,
    private readonly options: SchedulerOptions,
    private readonly logger: Logger,
    private readonly tokenizer: Tokenizer,
    private readonly summarizer?: Summarizer,
  ) {
    this.retry = options.retry ?? { maxAttempts: 3, baseMs: 500, maxMs: 30_000 };
    this.maxConcurrent = Math.max(1, options.maxConcurrent ?? 64);
    this.agingMs = Math.max(1, options.agingMs ?? 5_000);
    this.firstTokenTimeoutMs = options.firstTokenTimeoutMs ?? options.replyTimeoutMs;
    this.evictTimer = setInterval(() => this.evictIdle(), Math.min(options.idleEvictMs, 60_000));
    this.evictTimer.unref();
    // A stored summary covers turns the cached history still quotes: the next message reads again.
    summarizer?.onSummaryStored((sessionId) => {
      const rs = this.sessions.get(sessionId);
      if (rs) rs.history = undefined;
    });
  }

  /**
   * ownershipChanged tells the scheduler that this replica's partitions may have changed (a
   * rebalance): another replica may have run messages of any session meanwhile, so every cached
   * history is dropped and the next message of each session reads the session service again.
   */
  ownershipChanged(): void {
    this.epoch++;
    for (const rs of this.sessions.values()) rs.history = undefined;
  }

  /** personaChanged drops a persona from every RuntimeSession's cache (persona upserted or deleted). */
  personaChanged(personaId: string): void {
    this.personaGeneration++;
    for (const [key, p] of this.personas) if (p.value.id === personaId) this.personas.delete(key);
  }

  /**
   * push queues a message on its session's RuntimeSession. It resolves when the reply's outcome
   * (completed, cancelled, or skipped as already final) is published; it rejects with a
   * permanent error once a failed reply's `reply.failed` is published (the bus dead-letters the
   * message), or with another error when the message must be delivered again.
   */
  push(message: eventsV1.MessageCreated, options: PushOptions = {}): Promise<void> {
    if (this.stopping) return Promise.reject(new SchedulerStopping());
    const known = this.finalised.get(message.replyId);
    // A replayed dead letter goes on to prepare (which reopens a failed reply); anything else final here is done.
    if (known !== undefined && (!options.replayOf || known === 'completed')) {
      this.logger.info('reply already finalised by this replica; redelivered message skipped', { reply_id: message.replyId, outcome: known });
      this.metrics.replies.inc({ outcome: 'skipped' });
      return Promise.resolve();
    }
    let rs = this.sessions.get(message.sessionId);
    if (!rs) {
      rs = new RuntimeSession(message.sessionId);
      this.sessions.set(message.sessionId, rs);
    }
    rs.lastActive = Date.now();
    const priority = clampPriority(message.priority);
    return new Promise<void>((resolve, reject) => {
      // The listener goes when the job settles (a signal may outlive many messages).
      const onAbort = () => this.revoke(rs, job);
      const forget = () => options.signal?.removeEventListener('abort', onAbort);
      const job: Job = {
        m: message,
        replayOf: options.replayOf,
        priority,
        enqueuedAt: Date.now(),
        order: this.order++,
        bucket: { priority: priorityBucket(priority) },
        waiting: false,
        running: false,
        resolving: false,
        notBefore: 0,
        attempt: 1,
        streamed: false,
        cancelled: false,
        done: false,
        revoked: false,
        revoking: false,
        resolve: () => {
          forget();
          resolve();
        },
        reject: (err) => {
          forget();
          reject(err);
        },
      };
      if (options.signal?.aborted) return reject(new PartitionRevoked());
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.setWaiting(job, true);
      rs.queue.push(job);
      this.pump();
    });
  }

  /**
   * revoke handles a message whose partition this replica lost: one that has not started is given
   * back (the new owner delivers it again); a running one may finish within revokeGraceMs (its
   * outcome is published as usual), then it is aborted and dropped without a final event.
   */
  private revoke(rs: RuntimeSession, job: Job): void {
    if (job.done) return;
    if (job.running) {
      job.revoking = true;
      const grace = this.options.revokeGraceMs ?? 45_000;
      this.logger.info('partition revoked while a reply runs; it may finish first', { reply_id: job.m.replyId, grace_ms: grace });
      const timer = setTimeout(() => {
        if (job.done || !job.running) return;
        job.revoked = true;
        job.controller?.abort();
      }, grace);
      timer.unref();
      return;
    }
    job.revoked = true;
    this.dropRevoked(rs, job);
  }

  private dropRevoked(rs: RuntimeSession, job: Job): void {
    if (job.done) return;
    job.done = true;
    rs.history = undefined;
    this.remove(rs, job);
    job.running = false;
    this.logger.info('message revoked from this replica (rebalance); its new owner handles it', { reply_id: job.m.replyId });
    job.reject(new PartitionRevoked());
    this.pump();
  }

  /** cancel stops a queued or running reply of this replica. */
  cancel(ownerId: string, sessionId: string, replyId: string): boolean {
    const rs = this.sessions.get(sessionId);
    const job = rs?.queue.find((j) => j.m.replyId === replyId);
    if (!rs || !job || job.m.ownerId !== ownerId || job.cancelled) return false;
    job.cancelled = true;
    job.controller?.abort();
    // A waiting one is finished as cancelled when its turn in the session comes (events stay in order).
    this.pump();
    return true;
  }

  /** stats is a snapshot for GetStats. */
  stats() {
    let queued = 0;
    for (const rs of this.sessions.values()) for (const j of rs.queue) if (!j.running) queued++;
    return {
      runtimeSessions: this.sessions.size,
      queued,
      inFlight: this.running,
      completed: this.completed,
      failed: this.failed,
      retries: this.retries,
      deadLettered: this.deadLettered,
    };
  }

  /**
   * shutdown gives back every message that has not started (rejected with SchedulerStopping: the
   * bus leaves it unacknowledged, so it is delivered again) and refuses new ones; replies already
   * running finish. Call it right after the subscription started stopping.
   */
  shutdown(): void {
    this.stopping = true;
    for (const rs of this.sessions.values()) {
      for (const job of rs.queue.filter((j) => !j.running)) {
        this.remove(rs, job);
        job.reject(new SchedulerStopping());
      }
    }
  }

  /** stop ends the timers and aborts replies in progress. */
  stop(): void {
    this.stopping = true;
    clearInterval(this.evictTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    for (const rs of this.sessions.values()) for (const j of rs.queue) j.controller?.abort();
  }

  private setWaiting(job: Job, waiting: boolean): void {
    if (job.waiting === waiting) return;
    job.waiting = waiting;
    if (waiting) this.metrics.queueLength.inc(job.bucket);
    else this.metrics.queueLength.dec(job.bucket);
  }

  private remove(rs: RuntimeSession, job: Job): void {
    const i = rs.queue.indexOf(job);
    if (i >= 0) rs.queue.splice(i, 1);
    this.setWaiting(job, false);
    rs.lastActive = Date.now();
  }

  private evictIdle(): void {
    const now = Date.now();
    for (const [id, rs] of this.sessions) if (rs.queue.length === 0 && now - rs.lastActive > this.options.idleEvictMs) this.sessions.delete(id);
    this.limiter.sweep(now);
    for (const [k, v] of this.profileCache) if (v.expiresAt <= now) this.profileCache.delete(k);
    for (const [k, v] of this.personas) if (v.expiresAt <= now) this.personas.delete(k);
  }

  /**
   * pump starts what may start: while the replica has a free slot, the head message of a session
   * with nothing running, whose backoff is over and whose profile has a free slot and rate budget,
   * with the highest effective priority (decision 0008).
   */
  private pump(): void {
    if (this.stopping) return;
    for (;;) {
      const now = Date.now();
      let wake = Infinity;
      const ready: Array<{ rs: RuntimeSession; job: Job }> = [];
      for (const rs of this.sessions.values()) {
        const job = rs.queue[0];
        if (!job || job.running) continue;
        if (job.cancelled) {
          // Needs no slot: report it in the session's order and move on.
          void this.finishCancelledWaiting(rs, job);
          continue;
        }
        if (job.notBefore > now) {
          wake = Math.min(wake, job.notBefore);
          continue;
        }
        if (job.profileKey === undefined) {
          if (!job.resolving) void this.resolveProfile(rs, job);
          continue;
        }
        const at = this.limiter.readyAt(job.profileKey, job.limits ?? {}, now);
        if (at > now) {
          if (Number.isFinite(at)) wake = Math.min(wake, at);
          continue;
        }
        ready.push({ rs, job });
      }
      if (this.running >= this.maxConcurrent || ready.length === 0) {
        this.scheduleWake(wake);
        return;
      }
      // Several heads may share a profile: start one, then look again (its limits changed).
      const i = pickNext(
        ready.map((r) => r.job),
        now,
        this.agingMs,
      );
      const { rs, job } = ready[i]!;
      void this.runAttempt(rs, job);
    }
  }

  private scheduleWake(at: number): void {
    if (!Number.isFinite(at)) return;
    if (this.wakeTimer && at >= this.wakeAt) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.wakeAt = Infinity;
        this.pump();
      },
      Math.max(0, at - Date.now()),
    );
    this.wakeTimer.unref();
  }

  /** readWindow reads the job's conversation window and carries the session's stored seq forward. */
  private async readWindow(rs: RuntimeSession, job: Job): Promise<WindowResponse> {
    const m = job.m;
    const w = await this.ports.getConversationWindow({
      ownerId: m.ownerId,
      sessionId: m.sessionId,
      beforeMessageId: m.messageId,
      maxMessages: this.options.windowMaxMessages,
      replyId: m.replyId,
    });
    rs.seq = Math.max(rs.seq ?? 0, w.session?.lastSeq ?? 0);
    return w;
  }

  /** resolveProfile finds the persona and its profile's limits (cached per profile) before the message may start. */
  private async resolveProfile(rs: RuntimeSession, job: Job): Promise<void> {
    job.resolving = true;
    try {
      // The job is its session's head and nothing before it runs: its window can be read now,
      // beside the persona lookup, instead of after it (one round trip less before the model).
      // (Not when the session's cached history will do: no read at all.)
      // (Nor for a session's first message: its model call starts without the read, which then
      // follows it — see prepare.)
      if (!job.windowRead && !this.usableHistory(rs, job) && !this.speculates(rs, job)) {
        job.windowRead = this.readWindow(rs, job);
        job.windowRead.catch(() => {}); // prepare reads again if this failed
      }
      const persona = await this.personaOf(job);
      job.persona = persona;
      const profileId = persona.apiProfileId;
      // profileKey last: a pump that runs meanwhile must not see a key without its limits.
      if (!profileId) {
        job.limits = this.options.defaultLimits ?? {};
        job.profileKey = 'default';
      } else {
        job.limits = await this.limitsOf(job.m.ownerId, profileId);
        job.profileKey = `profile:${profileId}`;
      }
    } catch (err) {
      // Nothing ran yet, so the failure is an attempt like any other (retried if retryable).
      await this.attemptFailed(rs, job, toAppError(err));
    } finally {
      job.resolving = false;
      this.pump();
    }
  }

  /** personaOf is the job's persona: the replica's cached one while fresh, else read (and cached). */
  private async personaOf(job: Job): Promise<personaV1.Persona> {
    const m = job.m;
    const ttl = this.options.personaCacheTtlMs ?? 30_000;
    const key = `${m.ownerId}/${m.personaId}`;
    const hit = this.personas.get(key);
    if (hit && hit.expiresAt > Date.now()) {
      this.metrics.cache.inc({ cache: 'persona', result: 'hit' });
      return hit.value;
    }
    this.metrics.cache.inc({ cache: 'persona', result: 'miss' });
    const generation = this.personaGeneration;
    const { persona } = await this.ports.getPersona({ ownerId: m.ownerId, id: m.personaId });
    if (!persona) throw AppError.notFound('persona', m.personaId);
    // Not kept when a persona changed while it was read: the answer may predate the change.
    if (ttl > 0 && generation === this.personaGeneration) {
      this.personas.delete(key);
      this.personas.set(key, { value: persona, expiresAt: Date.now() + ttl });
      while (this.personas.size > PERSONA_CACHE_MAX) this.personas.delete(this.personas.keys().next().value!);
    }
    return persona;
  }

  /** speculates: a session's first message, whose model call starts before its window is read (decision 0020). */
  private speculates(rs: RuntimeSession, job: Job): boolean {
    return job.m.firstInSession && rs.seq === undefined && !job.replayOf && !job.noSpeculation && this.options.historyCache !== false && !this.finalised.has(job.m.replyId);
  }

  /**
   * usableHistory is the session's cached history when it may stand for reading the window before
   * this job's message (decision 0020): kept in this ownership epoch, the message not seen before
   * (a message delivered again is read, so its stored status decides), not a replayed dead letter,
   * its reply not finalised here, and within the window's message bound.
   */
  private usableHistory(rs: RuntimeSession, job: Job): HistoryCache | undefined {
    const h = rs.history;
    if (!h || h.epoch !== this.epoch || job.replayOf || h.seen.has(job.m.messageId) || this.finalised.has(job.m.replyId)) return undefined;
    // Messages of a session arrive in the order they were created; an older one is a copy sent
    // again (e.g. an outbox re-publish) whose first run may be out of this cache's view.
    if (!job.m.createdAt || job.m.createdAt.getTime() < h.newest) return undefined;
    if (h.base.messages.length + h.appended.length >= this.options.windowMaxMessages) return undefined;
    return h;
  }

  private async limitsOf(ownerId: string, profileId: string): Promise<ProfileLimits> {
    const hit = this.profileCache.get(profileId);
    if (hit && hit.expiresAt > Date.now()) return hit.limits;
    if (!this.ports.getApiProfile) return {};
    let limits: ProfileLimits = {};
    try {
      const { profile } = await this.ports.getApiProfile({ ownerId, id: profileId });
      const l = profile?.limits;
      limits = {
        ...(l?.maxConcurrentGenerations ? { maxConcurrent: l.maxConcurrentGenerations } : {}),
        ...(l?.requestsPerMinute ? { requestsPerMinute: l.requestsPerMinute } : {}),
      };
    } catch (err) {
      // A missing profile fails the reply in rag (profile_unusable); no limits apply to it here.
      if (toAppError(err).code !== Code.NotFound) throw err;
    }
    this.profileCache.set(profileId, { limits, expiresAt: Date.now() + (this.options.profileCacheTtlMs ?? 30_000) });
    return limits;
  }

  private publisherOf(job: Job): ReplyPublisher {
    job.publisher ??= new ReplyPublisher(job.m.sessionId, (id, events) => this.ports.publish(id, events));
    return job.publisher;
  }

  private emit(rs: RuntimeSession, job: Job, fields: Partial<eventsV1.ReplyEvent>): void {
    rs.seq = (rs.seq ?? 0) + 1;
    const base = { sessionId: job.m.sessionId, replyId: job.m.replyId, messageId: job.m.messageId, ownerId: job.m.ownerId, seq: rs.seq };
    this.publisherOf(job).push(eventsV1.ReplyEvent.fromPartial({ ...base, ...fields } as eventsV1.DeepPartial<eventsV1.ReplyEvent>));
  }

  private async finishCancelledWaiting(rs: RuntimeSession, job: Job): Promise<void> {
    job.running = true; // holds the session while the event goes out
    this.setWaiting(job, false);
    await this.finalize(rs, job, 'cancelled', new AppError(Code.Cancelled, 'the reply was cancelled', { reason: 'cancelled' }));
  }

  /** runAttempt runs one attempt of a job in a slot of the replica and of its profile. */
  private async runAttempt(rs: RuntimeSession, job: Job): Promise<void> {
    job.running = true;
    this.setWaiting(job, false);
    const key = job.profileKey!;
    this.limiter.start(key, Date.now());
    this.running++;
    this.metrics.inflight.inc();
    if (job.deadlineAt === undefined) {
      job.deadlineAt = Date.now() + this.options.replyTimeoutMs;
      job.startedPerf = performance.now();
    }
    const controller = new AbortController();
    job.controller = controller;
    if (job.cancelled) controller.abort();
    let firstTokenExpired = false;
    let replyExpired = false;
    const replyTimer = setTimeout(
      () => {
        replyExpired = true;
        controller.abort();
      },
      Math.max(0, job.deadlineAt - Date.now()),
    );
    let firstTokenTimer: NodeJS.Timeout | undefined;
    let outcome: { ok: true; skipped?: boolean } | { ok: false; err: AppError } | { ok: false; refused: true } | undefined;
    try {
      const prepared = job.prepared ?? (await this.prepare(rs, job));
      if (!prepared) {
        outcome = { ok: true, skipped: true };
      } else {
        job.prepared = prepared;
        const remaining = job.deadlineAt - Date.now();
        if (remaining <= 0) replyExpired = true;
        if (remaining <= 0 || controller.signal.aborted) throw new Error('aborted before the model was called');
        let sawDelta = false;
        firstTokenTimer = setTimeout(
          () => {
            if (sawDelta) return;
            firstTokenExpired = true;
            controller.abort();
          },
          Math.min(this.firstTokenTimeoutMs, remaining),
        );
        const stream = this.ports.generate(prepared.request, { deadlineMs: remaining, signal: controller.signal });
        let completed = false;
        for await (const item of stream) {
          if (controller.signal.aborted) break;
          // Nothing of a reply started before its read goes out until the read confirms it is new.
          if (prepared.confirm && !(await this.confirmed(prepared))) throw new SpeculationRefused();
          if (controller.signal.aborted) break;
          if (item.item?.$case === 'delta') {
            if (!sawDelta) {
              sawDelta = true;
              clearTimeout(firstTokenTimer);
              if (!job.streamed && job.startedPerf !== undefined) this.metrics.firstToken.observe((performance.now() - job.startedPerf) / 1000);
            }
            job.streamed = true;
            this.emit(rs, job, { kind: { $case: 'delta', value: { text: item.item.value.text } } });
          } else if (item.item?.$case === 'completed') {
            this.emit(rs, job, { kind: { $case: 'completed', value: item.item.value } });
            job.completedContent = item.item.value.content;
            completed = true;
          }
        }
        if (controller.signal.aborted) throw new Error('aborted');
        if (!completed) throw AppError.unavailable('the reply stream ended without completing');
        outcome = { ok: true };
      }
    } catch (err) {
      let app: AppError;
      // An attempt started before the read ends here: unless the read confirms the reply is new,
      // what happened to it (a failure, a cancellation) is not this reply's to report.
      const p = job.prepared;
      if (err instanceof SpeculationRefused || (p?.confirm && !job.revoked && !job.revoking && !(await this.confirmed(p)))) {
        outcome = { ok: false, refused: true };
      } else if (job.cancelled) app = new AppError(Code.Cancelled, 'the reply was cancelled', { reason: 'cancelled' });
      else if (replyExpired)
        app = new AppError(Code.DeadlineExceeded, `the reply did not finish within ${this.options.replyTimeoutMs} ms`, { reason: 'reply_timeout', details: { timeout_ms: this.options.replyTimeoutMs } });
      else if (firstTokenExpired)
        app = new AppError(Code.DeadlineExceeded, `the model sent no text within ${this.firstTokenTimeoutMs} ms`, { reason: 'first_token_timeout', details: { timeout_ms: this.firstTokenTimeoutMs } });
      else if (controller.signal.aborted && this.stopping) app = AppError.unavailable('the scheduler stopped while the reply was running');
      else app = toAppError(err);
      outcome ??= { ok: false, err: app! };
    } finally {
      clearTimeout(replyTimer);
      if (firstTokenTimer) clearTimeout(firstTokenTimer);
      job.controller = undefined;
      this.limiter.finish(key);
      this.running--;
      this.metrics.inflight.dec();
    }
    if (outcome!.ok) await this.finalize(rs, job, outcome.skipped ? 'skipped' : 'completed');
    else if ('refused' in outcome!) {
      // The read showed the reply is not new (a message delivered again): nothing was published;
      // it runs again the usual way (window first), not counted as an attempt.
      this.logger.info('a first message turned out to be delivered again; its early model call was dropped', { reply_id: job.m.replyId });
      this.metrics.cache.inc({ cache: 'speculation', result: 'refused' });
      job.prepared = undefined;
      job.noSpeculation = true;
      job.running = false;
      this.setWaiting(job, true);
    } else {
      job.running = false;
      await this.attemptFailed(rs, job, outcome!.err, replyExpired);
    }
    this.pump();
  }

  /** confirmed waits for a speculative start's read (once; later calls answer at once). */
  private async confirmed(prepared: Prepared): Promise<boolean> {
    if (!prepared.confirm) return true;
    const ok = await prepared.confirm;
    if (ok) prepared.confirm = undefined;
    return ok;
  }

  /**
   * prepare reads the conversation window and builds the request, once per job. Undefined means
   * the reply is already final (a redelivered message): nothing to do.
   */
  private async prepare(rs: RuntimeSession, job: Job): Promise<Prepared | undefined> {
    const m = job.m;
    const prefetched = job.windowRead;
    job.windowRead = undefined;
    if (!prefetched && this.options.historyCache !== false) {
      const h = this.usableHistory(rs, job);
      if (h) {
        const persona = job.persona ?? (await this.personaOf(job));
        // The window the session service would return: the read one, then the turns run here since.
        const prepared = this.build(job, persona, { ...h.base, session: h.base.session && { ...h.base.session, lastSeq: rs.seq ?? 0 } }, h.appended);
        if (prepared && rs.history === h && h.epoch === this.epoch) {
          this.metrics.cache.inc({ cache: 'history', result: 'hit' });
          h.seen.add(m.messageId);
          h.newest = Math.max(h.newest, m.createdAt?.getTime() ?? 0);
          job.tracked = h;
          return prepared;
        }
        // The prompt would quote turns whose positions are not known here (the summary's fold
        // point): read the window instead.
      }
    }
    this.metrics.cache.inc({ cache: 'history', result: 'miss' });
    rs.history = undefined;
    const epoch = this.epoch;
    // (Not when this replica already knows the session: then the message is one delivered again.)
    if (this.speculates(rs, job)) {
      // The session's first message (it has no history): the window is known to be empty, so the
      // model is called now, and the read — which tells a new reply from one delivered again — runs
      // meanwhile; its events wait for it (decision 0020). The read starts once the model call is
      // on its way (a turn of the event loop later): in one process it would otherwise go first.
      const read = prefetched ?? new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.readWindow(rs, job));
      const persona = job.persona ?? (await this.personaOf(job));
      const empty = sessionV1.GetConversationWindowResponse.fromPartial({ replyStatus: sessionV1.MessageStatus.MESSAGE_STATUS_PENDING });
      const prepared = this.build(job, persona, empty, [])!;
      prepared.confirm = read.then(
        (win) => {
          if (win.replyStatus !== sessionV1.MessageStatus.MESSAGE_STATUS_PENDING || win.messages.length > 0 || (win.summary?.text ?? '') !== '') return false;
          if (epoch === this.epoch && this.options.historyCache !== false) {
            const h: HistoryCache = { epoch, base: win, appended: [], seen: new Set([m.messageId]), newest: m.createdAt?.getTime() ?? 0 };
            rs.history = h;
            job.tracked = h;
          }
          return true;
        },
        () => false, // the usual path reads again, and a failure there is an attempt's
      );
      this.metrics.cache.inc({ cache: 'speculation', result: 'started' });
      return prepared;
    }
    const read = () => this.readWindow(rs, job);
    let win = prefetched ? await prefetched.catch(read) : await read();
    if (win.replyStatus === sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING) {
      // Delivered again after its first run streamed text. That run may have finished and published
      // its final event which the session service has not recorded yet (it lags the log), or may
      // still be finishing on the partition's previous owner: wait, bounded, for the stored status
      // to settle before failing it (decision 0018). The session's last seq is re-read meanwhile, so
      // a final event published here continues after everything already stored.
      const settleMs = this.options.redeliverySettleMs ?? 5_000;
      const pollMs = Math.max(10, this.options.redeliveryPollMs ?? 250);
      const until = Date.now() + settleMs;
      let lastSeq = win.session?.lastSeq ?? 0;
      let stableSince = Date.now();
      while (win.replyStatus === sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING && Date.now() < until && !job.controller?.signal.aborted) {
        await new Promise((r) => setTimeout(r, pollMs));
        win = await read();
        const seq = win.session?.lastSeq ?? 0;
        if (seq !== lastSeq) {
          lastSeq = seq;
          stableSince = Date.now();
        } else if (Date.now() - stableSince >= settleMs / 2 && Date.now() - stableSince >= 4 * pollMs) {
          // Nothing of this session arrived for a while: its first run is gone, not lagging.
          break;
        }
      }
      if (win.replyStatus !== sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING) this.logger.info('redelivered reply settled while waiting', { reply_id: m.replyId });
    }
    if (FINAL.has(win.replyStatus)) {
      if (!(job.replayOf && win.replyStatus === sessionV1.MessageStatus.MESSAGE_STATUS_FAILED)) {
        this.logger.info('reply already final; redelivered message skipped', { reply_id: m.replyId });
        return undefined;
      }
      // An operator replayed the dead letter of a failed reply: reopen it, then run it again.
      this.logger.info('replayed dead letter: the failed reply runs again', { reply_id: m.replyId, dead_letter_id: job.replayOf });
      // A control event, not a step of the stream: seq 0, so clients' seq sequence has no gap.
      this.publisherOf(job).push(
        eventsV1.ReplyEvent.fromPartial({ sessionId: m.sessionId, replyId: m.replyId, messageId: m.messageId, ownerId: m.ownerId, seq: 0, reopened: { deadLetterId: job.replayOf } }),
      );
    } else if (win.replyStatus === sessionV1.MessageStatus.MESSAGE_STATUS_STREAMING) {
      // Delivered again after text of this reply went out (a crash or a rebalance mid-stream):
      // it is never re-run silently; it fails and says so (decision 0009).
      job.streamed = true;
      throw AppError.unavailable('the reply was interrupted while streaming (its first run stopped)');
    }
    const persona = job.persona ?? (await this.personaOf(job));
    const prepared = this.build(job, persona, win, [])!;
    // A first run of a message (not a replay: later messages may exist) starts the session's cache.
    if (!job.replayOf && win.replyStatus === sessionV1.MessageStatus.MESSAGE_STATUS_PENDING && epoch === this.epoch && this.options.historyCache !== false) {
      const times = win.messages.map((x) => x.createdAt?.getTime() ?? 0);
      const h: HistoryCache = { epoch, base: win, appended: [], seen: new Set([...win.messages.map((x) => x.id), m.messageId]), newest: Math.max(0, m.createdAt?.getTime() ?? 0, ...times) };
      rs.history = h;
      job.tracked = h;
    }
    return prepared;
  }

  /**
   * build makes the request from a window (turns as read, then `appended` turns whose positions are
   * unknown). Undefined when appended turns are in it but the oldest quoted turn's position is not
   * known (the summary's fold point would be wrong): the caller reads the window instead.
   */
  private build(job: Job, persona: personaV1.Persona, win: WindowResponse, appended: HistoryCache['appended']): Prepared | undefined {
    const m = job.m;
    const turns: WindowTurn[] = win.messages
      .filter((x) => x.status === sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED && x.content.trim())
      .map((x) => ({ role: x.role === sessionV1.Role.ROLE_USER ? 'user' : 'assistant', content: x.content, position: Number(x.position) }));
    for (const a of appended) if (a.content.trim()) turns.push({ ...a, position: Number.NaN });
    const window = buildWindow(
      {
        budgetTokens: persona.settings?.historyBudgetTokens ?? this.options.defaultBudgetTokens,
        systemPrompt: persona.systemPrompt,
        userMessage: m.content,
        knowledgeReserveTokens: this.options.knowledgeReserveTokens,
        summary: win.summary?.text ?? '',
        turns,
      },
      this.tokenizer,
    );
    const oldest = window.history[0]?.position;
    // Turns fell out of the window: the summary's fold point is the oldest quoted turn, whose
    // position must then be known (one run here is not: read instead). With nothing dropped, an
    // oldest turn of this cache means every read message before it is left unquoted anyway.
    if (appended.length > 0 && window.dropped > 0 && (oldest === undefined || Number.isNaN(oldest))) return undefined;
    const history = window.history.map((x) => ({ role: x.role === 'user' ? ragV1.ChatRole.CHAT_ROLE_USER : ragV1.ChatRole.CHAT_ROLE_ASSISTANT, content: x.content }));
    const r = persona.settings?.retrieval;
    return {
      persona,
      win,
      oldestKept: oldest === undefined || Number.isNaN(oldest) ? undefined : oldest,
      request: {
        ownerId: m.ownerId,
        personaId: m.personaId,
        sessionId: m.sessionId,
        replyId: m.replyId,
        systemPrompt: persona.systemPrompt,
        history,
        summary: window.summary,
        userMessage: m.content,
        temperature: persona.settings?.temperature,
        maxTokens: persona.settings?.maxTokens,
        topK: r?.topK ?? 5,
        scoreThreshold: r?.scoreThreshold,
      },
    };
  }

  /**
   * attemptFailed decides after a failed attempt: a cancelled reply ends as cancelled; a reply that
   * already streamed text fails (reply_interrupted, never re-run); a retryable failure waits its
   * backoff (or Retry-After) and runs again while attempts and the reply deadline allow; anything
   * else fails the reply for good.
   */
  private async attemptFailed(rs: RuntimeSession, job: Job, err: AppError, replyExpired = false): Promise<void> {
    if (job.done) return;
    if (job.revoked || (job.revoking && !job.streamed)) {
      // Not retried here: the partition's new owner delivers the message again.
      this.dropRevoked(rs, job);
      return;
    }
    if (err.code === Code.Cancelled && job.cancelled) {
      job.running = true;
      await this.finalize(rs, job, 'cancelled', err);
      return;
    }
    const c = classify(err);
    if (job.streamed) {
      job.running = true;
      await this.finalize(rs, job, 'failed', c.retryable && !replyExpired ? interrupted(err) : err);
      return;
    }
    if (c.retryable && !replyExpired && job.attempt < this.retry.maxAttempts && !this.stopping) {
      const delay = retryDelayMs(job.attempt, this.retry, c.retryAfterMs);
      const deadlineAt = job.deadlineAt ?? Date.now() + this.options.replyTimeoutMs;
      if (Date.now() + delay < deadlineAt) {
        this.retries++;
        this.metrics.retries.inc({ reason: err.reason });
        this.logger.warn('reply attempt failed; retrying', { reply_id: job.m.replyId, attempt: job.attempt, code: err.reason, message: err.message, retry_in_ms: Math.round(delay) });
        job.attempt++;
        job.notBefore = Date.now() + delay;
        this.setWaiting(job, true);
        this.pump();
        return;
      }
    }
    job.running = true;
    await this.finalize(rs, job, 'failed', err);
  }

  /** finalize publishes a job's last event, settles push() and frees the session for its next message. */
  private async finalize(rs: RuntimeSession, job: Job, outcome: Outcome, err?: AppError): Promise<void> {
    if (job.done) return;
    job.done = true;
    const m = job.m;
    const seconds = job.startedPerf === undefined ? 0 : (performance.now() - job.startedPerf) / 1000;
    let publishError: unknown;
    try {
      if ((outcome === 'failed' || outcome === 'cancelled') && rs.seq === undefined) await this.learnSeq(rs, job);
      if (outcome === 'failed' || outcome === 'cancelled') {
        const app = err ?? AppError.internal();
        if (outcome === 'cancelled') this.logger.info('reply cancelled', { reply_id: m.replyId });
        else if (app.code === Code.Internal) this.logger.error('reply failed', { reply_id: m.replyId, attempts: job.attempt, err: app.cause ?? app });
        else this.logger.warn('reply failed', { reply_id: m.replyId, attempts: job.attempt, code: app.reason, message: app.message });
        const internal = app.code === Code.Internal;
        this.emit(rs, job, { kind: { $case: 'failed', value: { code: internal ? 'internal' : app.reason, message: internal ? 'internal error' : app.message } } });
      }
      if (job.publisher) await job.publisher.flush();
    } catch (e) {
      publishError = e;
    }
    this.advanceHistory(rs, job, publishError ? undefined : outcome);
    this.remove(rs, job);
    job.running = false;
    if (publishError) {
      // The outcome did not reach the log: not acknowledged, so the message is delivered again.
      this.logger.warn('reply events could not be published; the message will be delivered again', { reply_id: m.replyId, err: publishError });
      job.reject(publishError);
      this.pump();
      return;
    }
    this.metrics.replies.inc({ outcome });
    if (outcome !== 'skipped') this.metrics.processing.observe({ outcome }, seconds);
    this.rememberFinal(m.replyId, outcome);
    if (outcome === 'completed') {
      this.completed++;
      this.maybeSummarize(job);
      job.resolve();
    } else if (outcome === 'failed') {
      this.failed++;
      this.deadLettered++;
      this.metrics.deadLetters.inc({ reason: err?.reason ?? 'internal' });
      const app = err ?? AppError.internal();
      job.reject(new ReplyGivenUp(app.message, app.code === Code.Internal ? 'internal' : app.reason, job.attempt, app));
    } else job.resolve();
    this.pump();
  }

  /**
   * advanceHistory moves the session's cached history past a finished job: its user turn, and its
   * reply when completed — what the session service stores for them. Any other end (skipped as
   * already final, not published, not prepared on this cache) drops the cache: the next message reads.
   */
  private advanceHistory(rs: RuntimeSession, job: Job, outcome: Outcome | undefined): void {
    const h = rs.history;
    if (!h) return;
    const known = outcome === 'failed' || outcome === 'cancelled' || (outcome === 'completed' && job.completedContent !== undefined);
    if (!known || job.tracked !== h || h.epoch !== this.epoch) {
      rs.history = undefined;
      return;
    }
    h.appended.push({ role: 'user', content: job.m.content });
    if (outcome === 'completed') h.appended.push({ role: 'assistant', content: job.completedContent! });
    h.seen.add(job.m.replyId);
  }

  /** rememberFinal records a reply whose outcome is on the log (bounded, least recently used first). */
  private rememberFinal(replyId: string, outcome: Outcome): void {
    this.finalised.delete(replyId);
    this.finalised.set(replyId, outcome);
    const max = this.options.finalisedMemory ?? 10_000;
    while (this.finalised.size > max) this.finalised.delete(this.finalised.keys().next().value!);
  }

  /** learnSeq reads the session's last event seq when a reply fails before its window was read (best effort). */
  private async learnSeq(rs: RuntimeSession, job: Job): Promise<void> {
    try {
      const win = await this.ports.getConversationWindow({ ownerId: job.m.ownerId, sessionId: job.m.sessionId, beforeMessageId: job.m.messageId, maxMessages: 1, replyId: job.m.replyId });
      rs.seq = Math.max(rs.seq ?? 0, win.session?.lastSeq ?? 0);
    } catch (err) {
      this.logger.warn('could not read the session seq before failing a reply', { reply_id: job.m.replyId, err });
    }
  }

  /** maybeSummarize folds what fell out of the window, off the critical path (the reply is out). */
  private maybeSummarize(job: Job): void {
    const p = job.prepared;
    if (!this.summarizer || !p) return;
    const { win, persona, oldestKept } = p;
    const m = job.m;
    const foldBefore = oldestKept ?? (win.messages.length ? Number(win.messages[win.messages.length - 1]!.position) + 1 : 0);
    const outside = win.olderUncovered + win.messages.filter((x) => Number(x.position) < foldBefore).length;
    if (foldBefore > 0) {
      this.summarizer.maybeSchedule({
        ownerId: m.ownerId,
        sessionId: m.sessionId,
        personaId: m.personaId,
        summary: { text: win.summary?.text ?? '', coveredUntil: Number(win.summary?.coveredUntil ?? 0), version: Number(win.summary?.version ?? 0) },
        foldBefore,
        outside,
        temperature: persona.settings?.temperature,
      });
    }
  }
}
