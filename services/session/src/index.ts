import { eventsV1, sessionV1 } from '@chat/contracts';
import { PersonaClient, resolveTarget, targetsConfig, type ServiceEndpoint } from '@chat/clients';
import { migrate, Outbox, type Database } from '@chat/db';
import { Topics, type EventBus, decodeEvent, subscribePersonaChanges } from '@chat/events';
import { startGrpcServer, wrapImplementation } from '@chat/grpc';
import { defineModule } from '@chat/runtime';
import { SessionRepository } from './adapters/postgres/session-repo.js';
import { ReplyEventStore } from './adapters/postgres/reply-events.js';
import { migrations, SCHEMA } from './adapters/postgres/migrations.js';
import { sessionConfig } from './config.js';
import { sessionHandlers } from './handlers/session-handlers.js';
import { isUuid } from './domain/session.js';
import { KnownPersonas } from './domain/known-personas.js';
import { startEphemeralSessionSweep } from './adapters/postgres/ephemeral-sessions.js';

/** BoundedSet remembers at most `max` keys, forgetting the oldest first. */
class BoundedSet {
  private readonly keys = new Set<string>();
  constructor(private readonly max: number) {}
  has(key: string): boolean {
    return this.keys.has(key);
  }
  add(key: string): void {
    this.keys.add(key);
    if (this.keys.size > this.max) this.keys.delete(this.keys.values().next().value as string);
  }
  delete(key: string): void {
    this.keys.delete(key);
  }
}

export { sessionConfig } from './config.js';
export { SessionRepository } from './adapters/postgres/session-repo.js';
export { ReplyEventStore } from './adapters/postgres/reply-events.js';
export { migrations as sessionMigrations, SCHEMA as SESSION_SCHEMA } from './adapters/postgres/migrations.js';
export { sessionHandlers } from './handlers/session-handlers.js';
export { deleteEphemeralSessions } from './adapters/postgres/ephemeral-sessions.js';

/** sessionModule runs the session service: sessions and messages, the outbox, and reply persistence. */
export const sessionModule = defineModule<ServiceEndpoint>({
  name: 'session',
  target: true,
  description: 'sessions, messages and the message outbox (gRPC chat.session.v1.SessionService)',
  deps: ['database', 'bus'],
  after: ['persona'],
  config: [sessionConfig, targetsConfig],
  async init(ctx) {
    const cfg = ctx.config(sessionConfig);
    const { sequelize } = ctx.get<Database>('database');
    const bus = ctx.get<EventBus>('bus');
    await migrate(sequelize, SCHEMA, migrations, ctx.logger);
    const outbox = new Outbox(sequelize, SCHEMA, bus, ctx.logger);
    const repo = new SessionRepository(sequelize, outbox);
    const personas = new PersonaClient(resolveTarget(ctx, 'persona'));
    const replyEvents = new ReplyEventStore(sequelize, ctx.logger);
    // Retention: reply events older than REPLY_EVENTS_RETENTION_HOURS go (checked every 10 minutes).
    const retentionMs = cfg.REPLY_EVENTS_RETENTION_HOURS * 3_600_000;
    const sweepRetention = () =>
      replyEvents.deleteOlderThan(new Date(Date.now() - retentionMs)).catch((err: unknown) => ctx.logger.warn('reply event retention sweep failed', { err }));
    const retention = setInterval(() => void sweepRetention(), Math.min(retentionMs, 600_000));
    retention.unref();
    const ephemeralSweep = startEphemeralSessionSweep(sequelize, cfg.OPENAI_SESSION_RETENTION_HOURS, ctx.logger);

    // Replies already marked streaming (bounded: the oldest are forgotten, which costs one no-op update).
    const streaming = new BoundedSet(10_000);
    // Replies move the assistant row: pending → streaming (first delta) → completed|failed|cancelled.
    const replies = await bus.subscribe({
      topics: [Topics.replies],
      groupId: 'session.replies',
      maxAttempts: 10,
      handler: async (record) => {
        const event = decodeEvent(eventsV1.ReplyEvent, record, 'reply');
        const kind = event.kind;
        const storable = isUuid(event.sessionId) && event.seq > 0;
        if (!kind) {
          // A replayed dead letter runs its failed reply again (decision 0009): back to pending.
          if (event.reopened && isUuid(event.sessionId) && isUuid(event.replyId)) {
            streaming.delete(event.replyId);
            await repo.reopenReply(event.sessionId, event.replyId);
          }
          if (storable) await replyEvents.append({ sessionId: event.sessionId, seq: event.seq, payload: record.value });
          return;
        }
        if (kind.$case === 'delta') {
          // Every event is kept for `resume` (group-committed with the other partitions' events).
          if (storable) await replyEvents.append({ sessionId: event.sessionId, seq: event.seq, payload: record.value });
          // One write per reply, not per delta: the first delta marks it streaming.
          if (streaming.has(event.replyId)) return;
          await repo.markStreaming(event.sessionId, event.replyId);
          streaming.add(event.replyId);
          return;
        }
        streaming.delete(event.replyId);
        const base = { sessionId: event.sessionId, replyId: event.replyId, messageId: event.messageId, seq: event.seq };
        // The final state first: the first final event of a reply wins (decision 0018).
        const recordable = isUuid(event.replyId) && isUuid(event.messageId);
        if (!recordable) ctx.logger.warn('final reply event without valid ids; kept for resume, not recorded', { reply_id: event.replyId, seq: event.seq });
        const { duplicate } = !recordable
          ? { duplicate: false }
          : kind.$case === 'completed'
            ? await repo.recordReply({
                ...base,
                status: 'completed',
                content: kind.value.content,
                citations: kind.value.citations.map((c) => ({ source_id: c.sourceId, title: c.title, url: c.url, chunk_id: c.chunkId, score: c.score })),
                model: kind.value.model,
                error: '',
              })
            : await repo.recordReply({ ...base, status: kind.value.code === 'cancelled' ? 'cancelled' : 'failed', content: '', citations: [], model: '', error: `${kind.value.code}: ${kind.value.message}` });
        if (!storable) return;
        if (duplicate) {
          // A second final event of a reply already final (a message delivered again whose first run
          // had finished): stored as a tombstone, an event without a kind under the same seq, so the
          // seq exists (resume sees no gap) and nobody is shown a second outcome.
          ctx.logger.warn('second final event of a reply dropped (stored as a tombstone)', { reply_id: event.replyId, seq: event.seq, kind: kind.$case });
          const tombstone = eventsV1.ReplyEvent.fromPartial({ sessionId: event.sessionId, replyId: event.replyId, messageId: event.messageId, ownerId: event.ownerId, seq: event.seq });
          await replyEvents.append({ sessionId: event.sessionId, seq: event.seq, payload: eventsV1.ReplyEvent.encode(tombstone).finish() });
          return;
        }
        await replyEvents.append({ sessionId: event.sessionId, seq: event.seq, payload: record.value });
      },
    });

    // Deleting a persona deletes its sessions (messages and summaries cascade); repeats are harmless.
    const personaEvents = await bus.subscribe({
      topics: [Topics.personaEvents],
      groupId: 'session.persona-events',
      maxAttempts: 10,
      handler: async (record) => {
        const event = decodeEvent(eventsV1.PersonaEvent, record, 'persona');
        if (event.kind?.$case !== 'deleted' || !isUuid(event.personaId)) return;
        const removed = await repo.deleteByPersona(event.personaId);
        if (removed) ctx.logger.info('sessions of a deleted persona removed', { persona_id: event.personaId, sessions: removed });
      },
    });

    // Every replica forgets a deleted persona (a group of its own; the shared group above deletes
    // its sessions once).
    const known = new KnownPersonas(cfg.SESSION_PERSONA_CACHE_TTL_MS);
    const knownPersonaEvents = await subscribePersonaChanges(bus, {
      groupPrefix: 'session.persona-cache',
      logger: ctx.logger,
      onEvent: (personaId, event) => {
        if (event.kind?.$case === 'deleted') known.forget(personaId);
      },
    });

    const server = await startGrpcServer({
      address: cfg.SESSION_GRPC_LISTEN,
      logger: ctx.logger,
      services: [
        {
          name: 'chat.session.v1.SessionService',
          definition: sessionV1.SessionServiceService,
          implementation: wrapImplementation(sessionV1.SessionServiceService, sessionHandlers(repo, personas, replyEvents, known), ctx.logger),
        },
      ],
    });
    // Publish what a crash left only once this service answers: the scheduler calls back
    // (GetConversationWindow) for every event, and a call that finds no server fails the reply.
    outbox.start();
    return {
      value: { address: server.address },
      crashed: Promise.race([replies.crashed, personaEvents.crashed, knownPersonaEvents.crashed]),
      stop: async () => {
        clearInterval(retention);
        clearInterval(ephemeralSweep);
        await server.stop();
        await replies.stop();
        await replyEvents.close();
        await personaEvents.stop();
        await knownPersonaEvents.stop();
        await outbox.stop();
      },
    };
  },
});
