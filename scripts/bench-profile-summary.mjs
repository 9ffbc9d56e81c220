// Summarises a V8 .cpuprofile (from `BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" npm run
// bench:pipeline`): time by category (database driver, gRPC/HTTP2, LLM client, ...), by package,
// by function (self time) and the inclusive time of the project's own functions (dist/src).
// Sampled wall time of the main thread: on a loaded machine a syscall that was preempted counts too.
//
//   node scripts/bench-profile-summary.mjs /tmp/prof/CPU.*.cpuprofile [--top=30]
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) {
  console.error('usage: node scripts/bench-profile-summary.mjs <file.cpuprofile> [--top=30]');
  process.exit(2);
}
const top = Number(process.argv.find((a) => a.startsWith('--top='))?.slice(6) ?? 30);
const p = JSON.parse(readFileSync(file, 'utf8'));
const nodes = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const dt = new Map();
for (let i = 0; i < p.samples.length; i++) dt.set(p.samples[i], (dt.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
const total = [...dt.values()].reduce((a, b) => a + b, 0);

const short = (url) => url.replace(/^file:\/\/\/.*?\/node_modules\//, 'nm:').replace(/^file:\/\/\/.*?\/(libs|services|gateway)\//, '$1/');
const key = (n) => `${n.callFrame.functionName || '(anon)'} ${short(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
const pkgOf = (url) => {
  if (url.includes('node_modules/')) {
    const rest = url.split('node_modules/').pop().split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (url.startsWith('node:')) return url;
  const m = /\/(libs|services|gateway)\/([^/]+)?/.exec(url);
  return m ? (m[1] === 'gateway' ? 'gateway' : `${m[1]}/${m[2]}`) : url || '(vm)';
};
const rules = [
  ['idle', (f) => f === '(idle)'],
  ['garbage collector', (f) => f === '(garbage collector)'],
  ['module loading (startup)', (f, chain) => chain.some((c) => /internal\/modules\/(cjs|esm)/.test(c))],
  ['PostgreSQL driver (pg, sequelize)', (f, chain) => chain.slice(0, 12).some((c) => /node_modules\/(pg|pg-protocol|pg-pool|sequelize)\//.test(c))],
  ['gRPC / HTTP2', (f, chain) => chain.slice(0, 12).some((c) => /@grpc\/grpc-js|internal\/http2/.test(c))],
  ['LLM client (openai, undici)', (f, chain) => chain.slice(0, 12).some((c) => /node_modules\/openai|undici/.test(c))],
  ['Kafka client (kafkajs)', (f, chain) => chain.slice(0, 12).some((c) => /node_modules\/kafkajs/.test(c))],
  ['WebSocket (ws)', (f, chain) => chain.slice(0, 12).some((c) => /node_modules\/ws\//.test(c))],
  ['HTTP server (fastify, node:http)', (f, chain) => chain.slice(0, 12).some((c) => /fastify|avvio|find-my-way|node:_http/.test(c))],
  ['protobuf', (f, chain) => chain.slice(0, 6).some((c) => /protobuf|contracts\/dist/.test(c))],
  ['tokenizer', (f, chain) => chain.slice(0, 8).some((c) => /gpt-tokenizer/.test(c))],
  ['logger', (f, chain) => chain.slice(0, 8).some((c) => /libs\/logger/.test(c))],
];
const cats = new Map();
const self = new Map();
const pkgs = new Map();
const incl = new Map();
for (const [id, t] of dt) {
  const n = nodes.get(id);
  const chain = [];
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const c = nodes.get(cur);
    chain.push(`${c.callFrame.url} ${c.callFrame.functionName}`);
    const k = key(c);
    if (!seen.has(k)) {
      seen.add(k);
      incl.set(k, (incl.get(k) ?? 0) + t);
    }
  }
  const rule = rules.find(([, f]) => f(n.callFrame.functionName, chain));
  const cat = rule ? rule[0] : 'other';
  cats.set(cat, (cats.get(cat) ?? 0) + t);
  self.set(key(n), (self.get(key(n)) ?? 0) + t);
  const pk = pkgOf(n.callFrame.url) === '(vm)' ? n.callFrame.functionName : pkgOf(n.callFrame.url);
  pkgs.set(pk, (pkgs.get(pk) ?? 0) + t);
}
const print = (title, m, n, filter = () => true) => {
  console.log(`\n--- ${title}`);
  for (const [k, v] of [...m].filter(([k]) => filter(k)).sort((a, b) => b[1] - a[1]).slice(0, n))
    console.log(`${(v / 1000).toFixed(0).padStart(7)} ms ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
};
console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled`);
print('by category (the stack of each sample, first rule that matches)', cats, 20);
print('by package (self time)', pkgs, top);
print('by function (self time)', self, top);
print("inclusive time of the project's own functions", incl, top, (k) => /^(\S+) (libs|services|gateway)\//.test(k) && !k.includes('nm:'));
