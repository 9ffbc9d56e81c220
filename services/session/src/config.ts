import { defineConfig, env } from '@chat/config';

/** The session service's configuration. */
export const sessionConfig = defineConfig({
  SESSION_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
  /** How long reply events stay replayable for WebSocket `resume` (hours); older ones are deleted. */
  REPLY_EVENTS_RETENTION_HOURS: env.positiveInt().default(24),
  /** How long a session made for one OpenAI-compatible completion (ephemeral) is kept (hours); older ones are deleted with their messages. */
  OPENAI_SESSION_RETENTION_HOURS: env.positiveInt().default(24),
  /**
   * How long the session service remembers that a persona is its owner's (creating a session then
   * asks the persona service nothing); a deleted persona is forgotten on its event. 0 = ask each time.
   */
  SESSION_PERSONA_CACHE_TTL_MS: env.millis().default(30_000),
});
