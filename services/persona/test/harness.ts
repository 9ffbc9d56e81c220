import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PersonaClient, type ServiceEndpoint } from '@chat/clients';
import { connectDatabase, type Database, type EmbeddedPostgres, eventually, isolatedDatabase, type IsolatedDatabase, startEmbeddedPostgres, testInfrastructure } from '@chat/db';
import { InProcessBus, type OutgoingEvent } from '@chat/events';
import { closeClients } from '@chat/grpc';
import { configureLogger, type Logger } from '@chat/logger';
import { Runtime, type ModuleDef } from '@chat/runtime';
import { personaModule } from '../src/index.js';

/** RecordingBus is the in-process bus that keeps every published event (the outbox's payloads). */
export class RecordingBus extends InProcessBus {
  readonly published: Array<{ topic: string } & OutgoingEvent> = [];
  override async publish(topic: string, events: OutgoingEvent[]): Promise<void> {
    for (const e of events) this.published.push({ topic, ...e });
    await super.publish(topic, events);
  }
}

let embedded: Promise<{ server: EmbeddedPostgres; dir: string }> | undefined;

function sharedEmbedded(logger: Logger): Promise<EmbeddedPostgres> {
  embedded ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'persona-pg-'));
    chmodSync(dir, 0o755);
    return { server: await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), logger }), dir };
  })();
  return embedded.then((e) => e.server);
}

// Root-level hook: the shared embedded server stops once every suite is done.
after(async () => {
  if (!embedded) return;
  const { server, dir } = await embedded;
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** PersonaHarness is a running persona service on a real PostgreSQL. */
export interface PersonaHarness {
  client: PersonaClient;
  address: string;
  bus: RecordingBus;
  db: Database;
  databaseUrl: string;
  tmp: string;
  logger: Logger;
  stop(): Promise<void>;
}

/**
 * startPersona runs the persona module over DATABASE_URL when set, else an embedded PostgreSQL in a
 * temp dir, with the given extra environment (MASTER_KEYS, …).
 */
export async function startPersona(env: Record<string, string> = {}): Promise<PersonaHarness> {
  const logger = configureLogger({ silent: true, level: 'debug' });
  const tmp = mkdtempSync(join(tmpdir(), 'persona-'));
  // As root, the embedded server runs as the postgres user, which must reach its data directory.
  chmodSync(tmp, 0o755);
  let databaseUrl: string;
  let isolated: IsolatedDatabase | undefined;
  if (process.env.DATABASE_URL) {
    isolated = await isolatedDatabase(process.env.DATABASE_URL, 'persona_test', logger);
    databaseUrl = isolated.url;
  }
  else {
    // One embedded server per test process (it cannot be started twice in one process); each
    // harness gets a database of its own on it.
    const server = await sharedEmbedded(logger);
    const name = `persona_${randomBytes(6).toString('hex')}`;
    const admin = await connectDatabase(server.url, logger, 1);
    await admin.sequelize.query(`create database ${name}`);
    await admin.close();
    const url = new URL(server.url);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
  }
  const db = await connectDatabase(databaseUrl, logger, 2);
  const bus = new RecordingBus();
  const modules: ModuleDef[] = [
    ...(testInfrastructure(databaseUrl, bus, logger) as ModuleDef[]),
    personaModule as ModuleDef,
  ];
  const runtime = new Runtime(modules, ['persona'], { logger, env: { DATA_DIR: join(tmp, 'data'), ...env } });
  await runtime.start();
  const address = runtime.get<ServiceEndpoint>('persona').address;
  return {
    client: new PersonaClient(address),
    address,
    bus,
    db,
    databaseUrl,
    tmp,
    logger,
    async stop() {
      await runtime.stop();
      closeClients();
      await db.close();
      await isolated?.drop();
      rmSync(tmp, { recursive: true, force: true });
    },
  };
}

/** eventually (from @chat/db) polls fn until it returns something truthy. */
export { eventually };
