import { PersonaClient, resolveTarget, targetsConfig, type ServiceEndpoint } from '@chat/clients';
import type { Database } from '@chat/db';
import type { LlmEndpoint } from '@chat/devmodel';
import type { EventBus } from '@chat/events';
import type { ModuleDef } from '@chat/runtime';
import { loadKeyring, secretsConfig } from '@chat/secrets';
import { ragConfig } from './config.js';
import { startRagServer } from './server.js';

export { ragConfig } from './config.js';
export { startRagServer, PERSONA_EVENTS_GROUP, PROFILE_EVENTS_GROUP, type RagServer, type RagServerDeps } from './server.js';
export { ProfileResolver, type PersonaProfile, type PersonaProfileSource, type ResolvedEndpoint } from './domain/profiles.js';

/** ragModule runs the RAG service: ingestion jobs, the vector store, retrieval and grounded generation. */
export const ragModule: ModuleDef<ServiceEndpoint> = {
  name: 'rag',
  target: true,
  description: 'knowledge ingestion, vector search and grounded, streamed generation (chat.rag.v1.RagService)',
  deps: ['database', 'bus', 'llm'],
  // Replies resolve the persona's API profile through the persona service at run time.
  after: ['persona'],
  config: [ragConfig, targetsConfig, secretsConfig],
  async init(ctx) {
    const personas = new PersonaClient(resolveTarget(ctx, 'persona'));
    const keyring = await loadKeyring(ctx.config(secretsConfig), ctx.logger);
    const server = await startRagServer({
      config: ctx.config(ragConfig),
      database: ctx.get<Database>('database'),
      bus: ctx.get<EventBus>('bus'),
      llm: ctx.get<LlmEndpoint>('llm'),
      resolvePersona: (req) => personas.resolvePersona(req),
      keyring,
      logger: ctx.logger,
    });
    return { value: { address: server.address }, stop: () => server.stop(), crashed: server.crashed };
  },
};
