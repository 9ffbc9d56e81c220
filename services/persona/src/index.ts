import { personaV1 } from '@chat/contracts';
import type { ServiceEndpoint } from '@chat/clients';
import { migrate, Outbox, type Database } from '@chat/db';
import type { EventBus } from '@chat/events';
import { startGrpcServer, wrapImplementation } from '@chat/grpc';
import { defineModule } from '@chat/runtime';
import { loadKeyring, secretsConfig } from '@chat/secrets';
import { PersonaRepository } from './adapters/postgres/persona-repo.js';
import { ProfileRepository } from './adapters/postgres/profile-repo.js';
import { ApiKeyRepository } from './adapters/postgres/api-key-repo.js';
import { apiKeyHandlers } from './handlers/api-key-handlers.js';
import { migrations, SCHEMA } from './adapters/postgres/migrations.js';
import { personaConfig } from './config.js';
import { personaHandlers } from './handlers/persona-handlers.js';
import { profileHandlers } from './handlers/profile-handlers.js';

export { personaConfig } from './config.js';
export { applyPersonaPatch, effectiveSettings, validateNewPersona, type NewPersona, type Persona, type PersonaPatch, type PersonaSettings } from './domain/persona.js';
export { PROVIDERS, validateApiProfile, type ApiProfile, type ApiProfileInput } from './domain/api-profile.js';
export { rotateApiKeys, type RotationReport } from './rotation.js';
export { ApiKeyRepository, digestOf, newApiKey, type StoredApiKey } from './adapters/postgres/api-key-repo.js';

/** personaModule runs the persona service: personas in PostgreSQL, events through its outbox. */
export const personaModule = defineModule<ServiceEndpoint>({
  name: 'persona',
  target: true,
  description: 'personas, their settings and API profiles (gRPC chat.persona.v1.PersonaService)',
  deps: ['database', 'bus'],
  config: [personaConfig, secretsConfig],
  async init(ctx) {
    const cfg = ctx.config(personaConfig);
    const keyring = await loadKeyring(ctx.config(secretsConfig), ctx.logger);
    const { sequelize } = ctx.get<Database>('database');
    await migrate(sequelize, SCHEMA, migrations, ctx.logger);
    const outbox = new Outbox(sequelize, SCHEMA, ctx.get<EventBus>('bus'), ctx.logger);
    outbox.start();
    const repo = new PersonaRepository(sequelize, outbox);
    const profiles = new ProfileRepository(sequelize, outbox, keyring);
    const server = await startGrpcServer({
      address: cfg.PERSONA_GRPC_LISTEN,
      logger: ctx.logger,
      services: [
        {
          name: 'chat.persona.v1.PersonaService',
          definition: personaV1.PersonaServiceService,
          implementation: wrapImplementation(personaV1.PersonaServiceService, { ...personaHandlers(repo, profiles), ...profileHandlers(profiles) }, ctx.logger),
        },
        {
          name: 'chat.persona.v1.ApiKeyService',
          definition: personaV1.ApiKeyServiceService,
          implementation: wrapImplementation(personaV1.ApiKeyServiceService, apiKeyHandlers(new ApiKeyRepository(sequelize)), ctx.logger),
        },
      ],
    });
    return {
      value: { address: server.address },
      stop: async () => {
        await server.stop();
        await outbox.stop();
      },
    };
  },
});
