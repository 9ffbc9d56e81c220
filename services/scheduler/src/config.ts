import { defineConfig, env } from '@chat/config';

/** The scheduler's configuration. */
export const schedulerConfig = defineConfig({
  SCHEDULER_GRPC_LISTEN: env.address().default('127.0.0.1:0'),
  /** The whole reply must finish within this. */
  SCHEDULER_REPLY_TIMEOUT_MS: env.millis().default(120_000),
  /** A RuntimeSession idle this long is evicted (its caches dropped). */
  SCHEDULER_IDLE_EVICT_MS: env.millis().default(300_000),
  /** How many earlier turns go with a message (before infinite-session budgeting). */
  SCHEDULER_HISTORY_TURNS: env.positiveInt().default(20),
});
