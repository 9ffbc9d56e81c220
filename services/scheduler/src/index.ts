import { eventsV1, schedulerV1 } from '@chat/contracts';
import { PersonaClient, RagClient, resolveTarget, SessionClient, targetsConfig, type ServiceEndpoint } from '@chat/clients';
import { encodeEvent, traceHeaders, Topics, type EventBus, decodeEvent, REPLAY_HEADER, subscribePersonaChanges } from '@chat/events';
import { startGrpcServer, wrapImplementation } from '@chat/grpc';
import { withContext, newTraceId } from '@chat/logger';
import { defineModule } from '@chat/runtime';
import { schedulerConfig } from './config.js';
import { Scheduler } from './domain/scheduler.js';
import { DeadLetterIndex } from './adapters/dead-letters.js';
import { Summarizer } from './domain/summarizer.js';
import { gptTokenizer } from './adapters/tokenizer.js';
import { schedulerHandlers } from './handlers/scheduler-handlers.js';

export { schedulerConfig } from './config.js';
export { Scheduler, SchedulerStopping, ReplyGivenUp, PartitionRevoked, type SchedulerOptions, type PushOptions } from './domain/scheduler.js';
export { DeadLetterIndex } from './adapters/dead-letters.js';
export { classify, retryDelayMs, parseRetryAfter, REPLY_INTERRUPTED, type RetryPolicy } from './domain/retry.js';
export { ProfileLimiter, type ProfileLimits } from './domain/limits.js';
export { pickNext, effectivePriority, type Candidate } from './domain/policy.js';
export type { SchedulerPorts, SummaryPorts } from './domain/ports.js';
export { Summarizer, type SummarizerOptions, type SummaryJob } from './domain/summarizer.js';
export { buildWindow, type Tokenizer, type Window, type WindowInput, type WindowTurn } from './domain/window.js';
export { gptTokenizer } from './adapters/tokenizer.js';

/** schedulerModule consumes message events, runs RuntimeSessions and publishes reply events. */
export const schedulerModule = defineModule<ServiceEndpoint>({
  name: 'scheduler',
  target: true,
  description: 'RuntimeSessions: consumes messages, generates through rag, publishes replies (gRPC chat.scheduler.v1.SchedulerService)',
  deps: ['bus'],
  after: ['persona', 'session', 'rag'],
  config: [schedulerConfig, targetsConfig],
  async init(ctx) {
    const cfg = ctx.config(schedulerConfig);
    const bus = ctx.get<EventBus>('bus');
    const personas = new PersonaClient(resolveTarget(ctx, 'persona'));
    const sessions = new SessionClient(resolveTarget(ctx, 'session'));
    const rag = new RagClient(resolveTarget(ctx, 'rag'));
    const summarizer = new Summarizer(
      {
        listMessagesAfter: (req) => sessions.listMessagesAfter(req),
        summarize: (req) => rag.summarize(req, cfg.SCHEDULER_REPLY_TIMEOUT_MS),
        updateSummary: (req) => sessions.updateSummary(req),
      },
      gptTokenizer,
      {
        thresholdMessages: cfg.SCHEDULER_SUMMARY_THRESHOLD_MESSAGES,
        batchMessages: cfg.SCHEDULER_SUMMARY_BATCH_MESSAGES,
        batchTokens: cfg.SCHEDULER_SUMMARY_BATCH_TOKENS,
        summaryMaxTokens: cfg.SCHEDULER_SUMMARY_MAX_TOKENS,
        retryAfterMs: cfg.SCHEDULER_SUMMARY_RETRY_MS,
      },
      ctx.logger,
    );
    const scheduler = new Scheduler(
      {
        getPersona: (req) => personas.getPersona(req),
        getApiProfile: (req) => personas.getApiProfile(req),
        getConversationWindow: (req) => sessions.getConversationWindow(req),
        generate: (req, options) => rag.generate(req, options),
        publish: (sessionId, events) =>
          bus.publish(
            Topics.replies,
            events.map((e) => ({ key: sessionId, value: encodeEvent(eventsV1.ReplyEvent, e), headers: traceHeaders({ 'event-type': `reply.${e.kind?.$case ?? 'unknown'}` }) })),
          ),
      },
      {
        replyTimeoutMs: cfg.SCHEDULER_REPLY_TIMEOUT_MS,
        idleEvictMs: cfg.SCHEDULER_IDLE_EVICT_MS,
        windowMaxMessages: cfg.SCHEDULER_WINDOW_MAX_MESSAGES,
        defaultBudgetTokens: cfg.SCHEDULER_HISTORY_BUDGET_TOKENS,
        knowledgeReserveTokens: cfg.SCHEDULER_KNOWLEDGE_RESERVE_TOKENS,
        firstTokenTimeoutMs: cfg.SCHEDULER_FIRST_TOKEN_TIMEOUT_MS,
        maxConcurrent: cfg.SCHEDULER_MAX_CONCURRENT_GENERATIONS,
        retry: { maxAttempts: cfg.SCHEDULER_MAX_ATTEMPTS, baseMs: cfg.SCHEDULER_RETRY_BASE_MS, maxMs: cfg.SCHEDULER_RETRY_MAX_MS },
        agingMs: cfg.SCHEDULER_PRIORITY_AGING_MS,
        defaultLimits: { maxConcurrent: cfg.SCHEDULER_DEFAULT_MAX_CONCURRENT, requestsPerMinute: cfg.SCHEDULER_DEFAULT_REQUESTS_PER_MINUTE },
        profileCacheTtlMs: cfg.SCHEDULER_PROFILE_CACHE_TTL_MS,
        redeliverySettleMs: cfg.SCHEDULER_REDELIVERY_SETTLE_MS,
        revokeGraceMs: cfg.SCHEDULER_REVOKE_GRACE_MS,
        personaCacheTtlMs: cfg.SCHEDULER_PERSONA_CACHE_TTL_MS,
        historyCache: cfg.SCHEDULER_HISTORY_CACHE,
      },
      ctx.logger,
      gptTokenizer,
      summarizer,
    );
    const deadLetters = new DeadLetterIndex(bus, ctx.logger, cfg.SCHEDULER_DEAD_LETTER_INDEX_MAX);
    const dltSubscription = await deadLetters.start();
    // Every replica drops a changed persona from its RuntimeSessions: a group of its own (every
    // replica sees every persona event), from the end of the log, deleted at stop (decision 0020).
    const personaSubscription = await subscribePersonaChanges(bus, {
      groupPrefix: 'scheduler-cache',
      logger: ctx.logger,
      onEvent: (personaId) => scheduler.personaChanged(personaId),
    });
    const subscription = await bus.subscribe({
      topics: [Topics.messages],
      groupId: 'scheduler',
      // The scheduler owns the retries of a reply (decision 0009): a failed reply rejects with a
      // permanent error and is dead-lettered at once; these attempts only cover a reply outcome
      // that could not be published.
      maxAttempts: 3,
      // Many sessions' messages at once per partition (decision 0008); one session's in order.
      concurrency: cfg.SCHEDULER_PARTITION_CONCURRENCY,
      // Partitions may have moved: sessions' cached histories may be stale (decision 0020).
      onAssignment: () => scheduler.ownershipChanged(),
      handler: async (record, { signal }) => {
        const message = decodeEvent(eventsV1.MessageCreated, record, 'message');
        const traceId = record.headers['x-trace-id'];
        const replayOf = record.headers[REPLAY_HEADER];
        await withContext({ traceId: traceId && /^[0-9a-f]{32}$/.test(traceId) ? traceId : newTraceId() }, () => scheduler.push(message, { signal, ...(replayOf ? { replayOf } : {}) }));
      },
    });
    const server = await startGrpcServer({
      address: cfg.SCHEDULER_GRPC_LISTEN,
      logger: ctx.logger,
      services: [
        {
          name: 'chat.scheduler.v1.SchedulerService',
          definition: schedulerV1.SchedulerServiceService,
          implementation: wrapImplementation(schedulerV1.SchedulerServiceService, schedulerHandlers(scheduler, deadLetters), ctx.logger),
        },
      ],
    });
    return {
      value: { address: server.address },
      crashed: Promise.race([subscription.crashed, dltSubscription.crashed, personaSubscription.crashed]),
      stop: async () => {
        // Stop taking messages first (synchronously marks the subscription stopping), give back
        // the messages that have not started (left unacknowledged: delivered again), and let the
        // running replies finish (the consumer waits for them).
        const stopped = subscription.stop();
        scheduler.shutdown();
        await stopped;
        scheduler.stop();
        await personaSubscription.stop();
        await deadLetters.stop();
        await summarizer.stop();
        await server.stop();
      },
    };
  },
});
