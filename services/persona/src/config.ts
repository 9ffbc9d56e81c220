import { defineConfig, env } from '@chat/config';

/** The persona service's configuration. */
export const personaConfig = defineConfig({
  PERSONA_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
});
