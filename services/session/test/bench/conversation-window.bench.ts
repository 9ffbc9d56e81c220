// Benchmark (not a test): GetConversationWindow through the session handler on a real PostgreSQL,
// the previous path (ownership read, before position, window beside reply status, older count:
// four sequential round trips) against the one-statement path (one round trip). Calls are
// sequential (one in flight, as the scheduler makes them per session) and interleaved in blocks
// (previous, one statement, previous, …) so both share the machine's noise.
//
//   node --enable-source-maps services/session/dist/test/bench/conversation-window.bench.js [--calls=2000] [--warmup=200]
//
// Needs DATABASE_URL (e.g. `eval "$(scripts/infra env)"`); uses a database of its own and drops it.
// Prints a table and writes bench-results/conversation-window-<timestamp>.json.
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import type { PersonaClient } from '@chat/clients';
import { sessionV1 } from '@chat/contracts';
import { connectDatabase, isolatedDatabase, migrate, Outbox, QueryTypes } from '@chat/db';
import { InProcessBus } from '@chat/events';
import { configureLogger } from '@chat/logger';
import { migrations, SCHEMA } from '../../src/adapters/postgres/migrations.js';
import { SessionRepository } from '../../src/adapters/postgres/session-repo.js';
import { sessionHandlers } from '../../src/handlers/session-handlers.js';
import { previousGetConversationWindow } from '../support/previous-window.js';

const opt = (name: string, dflt: number) => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.slice(name.length + 3)) : dflt;
};
const calls = opt('calls', 2000);
const warmup = opt('warmup', 200);
const block = 50;

const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL is not set (eval "$(scripts/infra env)")');
  process.exit(2);
}
const logger = configureLogger({ silent: true });
const iso = await isolatedDatabase(url, 'bench_window', logger);
const db = await connectDatabase(iso.url, logger, 10);
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};
try {
  await migrate(db.sequelize, SCHEMA, migrations, logger);
  const repo = new SessionRepository(db.sequelize, new Outbox(db.sequelize, SCHEMA, new InProcessBus(), logger));
  const handlers = sessionHandlers(repo, {} as unknown as PersonaClient);
  const previous = previousGetConversationWindow(db.sequelize);

  // Other traffic: 500 sessions of 40 messages, so the messages table is not one session's.
  const owner = 'bench-owner';
  for (let i = 0; i < 500; i++) {
    const s = await repo.createSession(`other-${i % 50}`, randomUUID(), '');
    await repo.appendTurns(s.id, Array.from({ length: 40 }, (_, j) => ({ role: j % 2 ? 'assistant' : 'user', content: `turn ${j} `.repeat(20) })));
  }
  const newest = async (sessionId: string, role: 'user' | 'assistant') =>
    (await db.sequelize.query<{ id: string }>('select id from session.messages where session_id = :s and role = :role order by pos desc limit 1', { replacements: { s: sessionId, role }, type: QueryTypes.SELECT }))[0]!.id;
  // The OpenAI-compatible completion: a new session with a short history, its message and pending reply.
  const completion = await repo.openSession({
    ownerId: owner,
    personaId: randomUUID(),
    title: '',
    ephemeral: true,
    history: Array.from({ length: 6 }, (_, j) => ({ role: j % 2 ? 'assistant' : 'user', content: `history ${j} `.repeat(30) })),
    first: { content: 'What is the secret ingredient of the island soup?', priority: 5 },
  });
  // A long session: 2000 turns and a summary covering half, so a 200-message window is full (the older count runs).
  const long = await repo.createSession(owner, randomUUID(), 'long');
  await repo.appendTurns(long.id, Array.from({ length: 2000 }, (_, j) => ({ role: j % 2 ? 'assistant' : 'user', content: `long ${j} `.repeat(30) })));
  const half = (await db.sequelize.query<{ pos: string }>('select pos from session.messages where session_id = :s order by pos limit 1 offset 999', { replacements: { s: long.id }, type: QueryTypes.SELECT }))[0]!.pos;
  await repo.updateSummary(long.id, 'summary '.repeat(500), Number(half), 0);
  await db.sequelize.query('analyze');

  const cases: Array<[string, sessionV1.GetConversationWindowRequest]> = [
    [
      'completion (new session, 7 messages, max 200)',
      sessionV1.GetConversationWindowRequest.fromPartial({ ownerId: owner, sessionId: completion.session.id, beforeMessageId: completion.messageId, maxMessages: 200, replyId: completion.replyId }),
    ],
    [
      'long session (window full, max 200)',
      sessionV1.GetConversationWindowRequest.fromPartial({ ownerId: owner, sessionId: long.id, beforeMessageId: await newest(long.id, 'user'), maxMessages: 200, replyId: await newest(long.id, 'assistant') }),
    ],
  ];
  const results: Record<string, Record<string, { p50: number; p90: number; p99: number; mean: number; calls: number }>> = {};
  for (const [name, req] of cases) {
    const paths = { previous: () => previous(req), one_statement: () => handlers.getConversationWindow(req) };
    const samples: Record<string, number[]> = { previous: [], one_statement: [] };
    for (const [, fn] of Object.entries(paths)) for (let i = 0; i < warmup; i++) await fn();
    for (let done = 0; done < calls; done += block) {
      for (const [path, fn] of Object.entries(paths)) {
        for (let i = 0; i < block && done + i < calls; i++) {
          const t = process.hrtime.bigint();
          await fn();
          samples[path]!.push(Number(process.hrtime.bigint() - t) / 1e6);
        }
      }
    }
    results[name] = Object.fromEntries(
      Object.entries(samples).map(([path, xs]) => [path, { p50: pct(xs, 50), p90: pct(xs, 90), p99: pct(xs, 99), mean: xs.reduce((a, b) => a + b, 0) / xs.length, calls: xs.length }]),
    );
  }
  console.log(`GetConversationWindow through the handler, ${calls} sequential calls per path (ms)`);
  for (const [name, r] of Object.entries(results)) {
    console.log(`\n${name}`);
    console.log('path            p50     p90     p99    mean');
    for (const [path, v] of Object.entries(r)) console.log(`${path.padEnd(14)} ${v.p50.toFixed(3).padStart(6)}  ${v.p90.toFixed(3).padStart(6)}  ${v.p99.toFixed(3).padStart(6)}  ${v.mean.toFixed(3).padStart(6)}`);
  }
  const dir = join(process.cwd(), 'bench-results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `conversation-window-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ calls, warmup, machine: { cpus: cpus().length, loadavg: loadavg() }, results }, null, 2));
  console.log(`\nwritten ${file}`);
} finally {
  await db.close();
  await iso.drop();
}
