import { join, resolve } from 'node:path';
import { defineConfig, env, z } from '@chat/config';
import { connectDatabase, startEmbeddedPostgres, type Database } from '@chat/db';
import { defineModule } from '@chat/runtime';
import { ALL_TARGETS } from './targets.js';

/** Where the relational store is; unset means an embedded PostgreSQL in DATA_DIR. */
export const databaseConfig = defineConfig({
  DATABASE_URL: env.postgresUrl().optional(),
  DATABASE_POOL_MAX: env.positiveInt().default(10),
  DATA_DIR: z.string().default('.data'),
});

/** databaseModule provides a PostgreSQL connection: DATABASE_URL, or embedded PostgreSQL in `all` mode. */
export const databaseModule = defineModule<Database>({
  name: 'database',
  config: [databaseConfig],
  async init(ctx) {
    const cfg = ctx.config(databaseConfig);
    let url = cfg.DATABASE_URL;
    let embedded: { stop(): Promise<void> } | undefined;
    if (!url) {
      if (!ALL_TARGETS.every((t) => ctx.targets.has(t))) {
        throw new Error('DATABASE_URL is required: the embedded PostgreSQL only serves --target=all (one process for every component)');
      }
      const pg = await startEmbeddedPostgres({ dataDir: join(resolve(cfg.DATA_DIR), 'postgres'), logger: ctx.logger });
      url = pg.url;
      embedded = pg;
    }
    try {
      const db = await connectDatabase(url, ctx.logger, cfg.DATABASE_POOL_MAX);
      return {
        value: db,
        stop: async () => {
          await db.close();
          await embedded?.stop();
        },
      };
    } catch (err) {
      await embedded?.stop();
      throw err;
    }
  },
});
