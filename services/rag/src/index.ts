import type { ServiceEndpoint } from '@chat/clients';
import type { Database } from '@chat/db';
import type { LlmEndpoint } from '@chat/devmodel';
import type { EventBus } from '@chat/events';
import type { ModuleDef } from '@chat/runtime';
import { ragConfig } from './config.js';
import { startRagServer } from './server.js';

export { ragConfig } from './config.js';
export { startRagServer, PERSONA_EVENTS_GROUP, type RagServer, type RagServerDeps } from './server.js';

/** ragModule runs the RAG service: ingestion jobs, the vector store, retrieval and grounded generation. */
export const ragModule: ModuleDef<ServiceEndpoint> = {
  name: 'rag',
  target: true,
  description: 'knowledge ingestion, vector search and grounded, streamed generation (chat.rag.v1.RagService)',
  deps: ['database', 'bus', 'llm'],
  config: [ragConfig],
  async init(ctx) {
    const server = await startRagServer({
      config: ctx.config(ragConfig),
      database: ctx.get<Database>('database'),
      bus: ctx.get<EventBus>('bus'),
      llm: ctx.get<LlmEndpoint>('llm'),
      logger: ctx.logger,
    });
    return { value: { address: server.address }, stop: () => server.stop(), crashed: server.crashed };
  },
};
