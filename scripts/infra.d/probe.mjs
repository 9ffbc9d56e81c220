// One-shot readiness probes used by scripts/infra. Exit 0 when ready, 1 otherwise.
//   node probe.mjs pg <connection-url>
//   node probe.mjs kafka <broker[,broker]>
import pg from 'pg';

const [kind, target] = process.argv.slice(2);
const TIMEOUT_MS = Number.parseInt(process.env.PROBE_TIMEOUT_MS || '5000', 10);

const withTimeout = (p) => Promise.race([
  p,
  new Promise((_, rej) => setTimeout(() => rej(new Error(`timeout after ${TIMEOUT_MS}ms`)), TIMEOUT_MS).unref()),
]);

async function probePg(url) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: TIMEOUT_MS });
  client.on('error', () => {});
  try {
    await withTimeout(client.connect());
    const { rows } = await withTimeout(client.query('select 1 as ok'));
    if (rows[0]?.ok !== 1) throw new Error('unexpected answer to select 1');
  } finally {
    client.end().catch(() => {});
  }
}

async function probeKafka(brokers) {
  process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
  const { Kafka, logLevel } = await import('kafkajs');
  const kafka = new Kafka({
    clientId: 'infra-probe',
    brokers: brokers.split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: TIMEOUT_MS,
    requestTimeout: TIMEOUT_MS,
    retry: { retries: 0 },
  });
  const admin = kafka.admin();
  try {
    await withTimeout(admin.connect());
    await withTimeout(admin.listTopics());
  } finally {
    admin.disconnect().catch(() => {});
  }
}

try {
  if (kind === 'pg') await probePg(target);
  else if (kind === 'kafka') await probeKafka(target);
  else throw new Error(`usage: probe.mjs pg <url> | kafka <brokers>`);
  process.exit(0);
} catch (err) {
  if (process.env.PROBE_VERBOSE) console.error(`${kind}: ${err?.message || err}`);
  process.exit(1);
}
