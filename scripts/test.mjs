// Runs every compiled mocha test of the workspace (unit tests first, end-to-end last) and ends
// with one plain summary line: "N passed, N failed". Exits non-zero on any failure, and on any
// pending (skipped) test under CI=true.
//
// The suites that need real PostgreSQL, Kafka and Milvus never skip: when DATABASE_URL,
// KAFKA_BROKERS or MILVUS_ADDRESS is unset, this script starts the missing servers with
// scripts/infra (on loopback) and stops again, at the end, what it started.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import Mocha from 'mocha';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// Node 20 has no fs.glob: walk each package's dist/test for *.test.js.
function walk(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.test.js') ? [join(dir, e.name)] : [],
  );
}
const packages = ['libs', 'services'].flatMap((d) => readdirSync(join(root, d)).map((p) => join(d, p))).concat(['gateway']);
const grep = process.argv.slice(2).find((a) => !a.startsWith('-'));
let files = packages.flatMap((p) => walk(join(root, p, 'dist', 'test')).map((f) => relative(root, f)));
if (grep) files = files.filter((f) => f.includes(grep));
// End-to-end suites last: they start whole systems.
files.sort((a, b) => Number(a.includes('/e2e/')) - Number(b.includes('/e2e/')) || a.localeCompare(b));

// Real infrastructure for the suites that need it.
const infra = join(root, 'scripts', 'infra');
const COMPONENT = { DATABASE_URL: 'postgres', KAFKA_BROKERS: 'kafka', MILVUS_ADDRESS: 'milvus' };
const missing = Object.keys(COMPONENT).filter((v) => !process.env[v]);
const startedHere = [];
if (missing.length > 0) {
  const components = missing.map((v) => COMPONENT[v]);
  for (const c of components) {
    if (spawnSync('bash', [infra, 'status', c], { stdio: 'ignore' }).status !== 0) startedHere.push(c);
  }
  console.log(`starting test infrastructure: ${components.join(', ')} (scripts/infra up)`);
  execFileSync('bash', [infra, 'up', ...components], { stdio: ['ignore', 'inherit', 'inherit'] });
  const envText = execFileSync('bash', [infra, 'env'], { encoding: 'utf8' });
  for (const line of envText.split('\n')) {
    const m = /^export ([A-Z_]+)=(.*)$/.exec(line.trim());
    if (m && missing.includes(m[1])) process.env[m[1]] = m[2].replace(/^['"]|['"]$/g, '');
  }
}
function stopStartedInfra() {
  if (startedHere.length === 0) return;
  spawnSync('bash', [infra, 'down', ...startedHere], { stdio: ['ignore', 'inherit', 'inherit'] });
}

const mocha = new Mocha({ reporter: 'spec', timeout: 20_000, forbidOnly: true });
for (const f of files) mocha.addFile(join(root, f));
try {
  await mocha.loadFilesAsync();
} catch (err) {
  // A test file that cannot load (a stale dist/, a syntax error) fails the run; what this run
  // started must not be left behind for the next one to trip over.
  console.error(err);
  stopStartedInfra();
  console.log('\n0 passed, 1 failed (a test file could not be loaded)');
  process.exit(1);
}
console.log(`running ${files.length} test files:\n  ${files.map((f) => relative(root, join(root, f))).join('\n  ')}`);
const runner = mocha.run((failures) => {
  const stats = runner.stats;
  const passes = stats?.passes ?? 0;
  const pending = stats?.pending ?? 0;
  const failed = stats?.failures ?? failures;
  const skipped = pending ? `, ${pending} skipped` : '';
  stopStartedInfra(); // before the summary, so the summary stays the last line
  console.log(`\n${passes} passed, ${failed} failed${skipped}`);
  const ci = process.env.CI === 'true';
  process.exitCode = failed > 0 || (ci && pending > 0) || passes === 0 ? 1 : 0;
  // Test servers may keep handles open; the summary is printed, so leave.
  setTimeout(() => process.exit(process.exitCode), 200).unref();
});
