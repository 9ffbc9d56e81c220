import { eventsV1, sessionV1 } from '@chat/contracts';
import { PersonaClient, resolveTarget, targetsConfig, type ServiceEndpoint } from '@chat/clients';
import { migrate, Outbox, type Database } from '@chat/db';
import { Topics, type EventBus } from '@chat/events';
import { startGrpcServer, wrapImplementation } from '@chat/grpc';
import { defineModule } from '@chat/runtime';
import { SessionRepository } from './adapters/postgres/session-repo.js';
import { migrations, SCHEMA } from './adapters/postgres/migrations.js';
import { sessionConfig } from './config.js';
import { sessionHandlers } from './handlers/session-handlers.js';

export { sessionConfig } from './config.js';

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
    outbox.start();
    const repo = new SessionRepository(sequelize, outbox);
    const personas = new PersonaClient(resolveTarget(ctx, 'persona'));

    // Final replies become assistant messages; deltas are only for live streams.
    const replies = await bus.subscribe({
      topics: [Topics.replies],
      groupId: 'session',
      maxAttempts: 10,
      handler: async (record) => {
        let event: eventsV1.ReplyEvent;
        try {
          event = eventsV1.ReplyEvent.decode(record.value);
        } catch (err) {
          ctx.logger.error('undecodable reply event skipped', { key: record.key, err });
          return;
        }
        const kind = event.kind;
        if (!kind || kind.$case === 'delta') return;
        const base = { sessionId: event.sessionId, replyId: event.replyId, messageId: event.messageId, seq: event.seq };
        if (kind.$case === 'completed') {
          await repo.recordReply({
            ...base,
            status: 'completed',
            content: kind.value.content,
            citations: kind.value.citations.map((c) => ({ source_id: c.sourceId, title: c.title, url: c.url, chunk_id: c.chunkId, score: c.score })),
            model: kind.value.model,
            error: '',
          });
        } else {
          await repo.recordReply({ ...base, status: kind.value.code === 'cancelled' ? 'cancelled' : 'failed', content: '', citations: [], model: '', error: `${kind.value.code}: ${kind.value.message}` });
        }
      },
    });

    const server = await startGrpcServer({
      address: cfg.SESSION_GRPC_LISTEN,
      logger: ctx.logger,
      services: [
        {
          name: 'chat.session.v1.SessionService',
          definition: sessionV1.SessionServiceService,
          implementation: wrapImplementation(sessionV1.SessionServiceService, sessionHandlers(repo, personas), ctx.logger),
        },
      ],
    });
    return {
      value: { address: server.address },
      crashed: replies.crashed,
      stop: async () => {
        await server.stop();
        await replies.stop();
        await outbox.stop();
      },
    };
  },
});
