import { defineConfig, env } from '@chat/config';

/** The session service's configuration. */
export const sessionConfig = defineConfig({
  SESSION_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
});
