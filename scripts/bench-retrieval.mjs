// Retrieval benchmark: quality and speed of the RAG retrieval on both vector stores.
//
//  1. Quality: the labelled question set bench/retrieval/corpus.json (original text dedicated
//     CC0, 25 documents, one paragraph = one chunk, 101 questions each labelled with the paragraph
//     that answers it) → recall@5 and MRR@10 for dense, hybrid (dense + BM25, reciprocal rank
//     fusion) and hybrid + rerank (the local reranker), with the local embedder.
//  2. Scale: N synthetic chunks (default 100 000, one persona) → ingest chunks/s (local
//     embedding + store writes, batches of 64 as ingestion does) and search p50/p99 (dense and
//     hybrid, query embedding included) over 200 queries.
//
// Both run through the service's own Retriever, KnowledgeIndex and store adapters (compiled, so
// `npm run build` first), on LanceDB (a temporary directory) and on Milvus when MILVUS_ADDRESS is
// set (collections of their own, dropped at the end). Prints a table and writes
// bench-results/retrieval-<timestamp>.json.
//
//   npm run bench:retrieval -- [--scale-chunks=100000] [--queries=200] [--stores=lancedb,milvus] [--batch=64]
// Each option may also be given as an env var: BENCH_SCALE_CHUNKS, BENCH_QUERIES, BENCH_STORES, BENCH_BATCH.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { configureLogger } from '@chat/logger';
import { MilvusClient } from '@zilliz/milvus2-sdk-node';
import { opt, ROOT } from './lib/bench.mjs';

const RAG = join(ROOT, 'services', 'rag', 'dist', 'src');
const { LanceVectorStore } = await import(join(RAG, 'adapters', 'lancedb', 'store.js'));
const { MilvusVectorStore } = await import(join(RAG, 'adapters', 'milvus', 'store.js'));
const { LocalHashEmbedder } = await import(join(RAG, 'domain', 'hash-embedder.js'));
const { KnowledgeIndex } = await import(join(RAG, 'domain', 'spaces.js'));
const { Retriever } = await import(join(RAG, 'domain', 'retrieval.js'));
const { LocalOverlapReranker } = await import(join(RAG, 'domain', 'rerank.js'));

const cfg = {
  scaleChunks: opt('scale-chunks', 100_000),
  queries: opt('queries', 200),
  stores: opt('stores', 'lancedb,milvus').split(',').map((s) => s.trim()).filter(Boolean),
  batch: opt('batch', 64),
};

const logger = configureLogger({ silent: true });
const corpus = JSON.parse(readFileSync(join(ROOT, 'bench', 'retrieval', 'corpus.json'), 'utf8'));
const embedder = new LocalHashEmbedder();

/** A deterministic PRNG (mulberry32), so every run sees the same synthetic data. */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
const round = (x, d = 3) => Math.round(x * 10 ** d) / 10 ** d;

/** The in-memory stand-ins of the PostgreSQL repositories: one active space per persona, no sources. */
function memoryIndex(store, spaces) {
  const repo = {
    active: async (personaId) => spaces.get(personaId),
    list: async (personaId) => (spaces.has(personaId) ? [spaces.get(personaId)] : []),
    create: async () => undefined,
    activate: async () => undefined,
    delete: async () => undefined,
    deleteByPersona: async () => undefined,
  };
  const index = new KnowledgeIndex({
    store,
    spaces: repo,
    profiles: { configured: async () => ({ spec: { provider: 'local', model: embedder.name, baseUrl: '' }, apiKey: '' }) },
    makeEmbedder: () => embedder,
    logger,
  });
  const sources = { ownersOfPersona: async () => [], listByPersona: async () => [], save: async () => {}, delete: async () => {}, deleteByPersona: async () => {} };
  return new Retriever({ index, sources, reranker: new LocalOverlapReranker() });
}

function space(personaId) {
  return { id: `bench${personaId}`, personaId, ownerId: 'bench', dimensions: embedder.dimensions, provider: 'local', model: embedder.name, baseUrl: '', state: 'active', createdAt: new Date() };
}

const CONFIGS = [
  { name: 'dense', mode: 'dense', rerank: false },
  { name: 'hybrid', mode: 'hybrid', rerank: false },
  { name: 'hybrid+rerank', mode: 'hybrid', rerank: true },
];

async function quality(store) {
  const personaId = 'quality';
  const sp = space(personaId);
  const chunks = corpus.documents.flatMap((d) =>
    d.paragraphs.map((text, i) => ({ id: `${d.id}-${i}`, personaId, sourceId: d.id, title: d.title, url: '', text })),
  );
  const vectors = await embedder.embed(chunks.map((c) => `${c.title}\n${c.text}`));
  await store.upsert(sp, chunks.map((c, i) => ({ ...c, vector: vectors[i] })));
  const retriever = memoryIndex(store, new Map([[personaId, sp]]));
  const out = {};
  for (const c of CONFIGS) {
    let hits5 = 0;
    let rr = 0;
    const ms = [];
    for (const q of corpus.questions) {
      const started = performance.now();
      const got = await retriever.retrieve({ ownerId: 'bench', personaId, query: q.question, topK: 10, mode: c.mode, rerank: c.rerank, queryRewrite: false });
      ms.push(performance.now() - started);
      const rank = got.findIndex((h) => h.id === `${q.document}-${q.paragraph}`);
      if (rank >= 0 && rank < 5) hits5++;
      if (rank >= 0 && rank < 10) rr += 1 / (rank + 1);
    }
    ms.sort((a, b) => a - b);
    out[c.name] = { recall_at_5: round(hits5 / corpus.questions.length), mrr_at_10: round(rr / corpus.questions.length), p50_ms: round(pct(ms, 50), 2) };
  }
  return { chunks: chunks.length, questions: corpus.questions.length, ...out };
}

/** Synthetic text: Zipf-distributed words of a 20 000-word made-up vocabulary, 60–120 words per chunk. */
function synthetic(n, seed) {
  const r = rng(seed);
  const syll = ['ka', 'lo', 'mi', 'ren', 'tas', 'vo', 'ul', 'shi', 'bra', 'quen', 'dor', 'pe', 'zu', 'gar', 'nei', 'tho'];
  const vocab = Array.from({ length: 20_000 }, (_, i) => {
    let w = '';
    let x = i + 1;
    while (x > 0) {
      w += syll[x % syll.length];
      x = Math.floor(x / syll.length);
    }
    return w;
  });
  // Zipf(s≈1.05) by inverse CDF over ranks.
  const weights = vocab.map((_, i) => 1 / (i + 1) ** 1.05);
  const total = weights.reduce((a, b) => a + b, 0);
  const cdf = [];
  let acc = 0;
  for (const w of weights) cdf.push((acc += w / total));
  const word = () => {
    const u = r();
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return vocab[lo];
  };
  const texts = [];
  for (let i = 0; i < n; i++) {
    const len = 60 + Math.floor(r() * 60);
    texts.push(Array.from({ length: len }, word).join(' '));
  }
  return { texts, r };
}

async function scale(store, name) {
  const personaId = 'scale';
  const sp = space(personaId);
  const { texts, r } = synthetic(cfg.scaleChunks, 7);
  const started = performance.now();
  let embedMs = 0;
  for (let i = 0; i < texts.length; i += cfg.batch) {
    const batch = texts.slice(i, i + cfg.batch);
    const t0 = performance.now();
    const vectors = await embedder.embed(batch);
    embedMs += performance.now() - t0;
    await store.upsert(
      sp,
      batch.map((text, k) => ({ id: `s${i + k}`, personaId, sourceId: `src${Math.floor((i + k) / 500)}`, title: '', url: '', text, vector: vectors[k] })),
    );
    if ((i / cfg.batch) % 200 === 0) process.stdout.write(`\r  ${name}: ingested ${i + batch.length}/${texts.length}`);
  }
  const ingestMs = performance.now() - started;
  process.stdout.write('\n');
  let indexMs = 0;
  if (store.ensureIndexes) {
    const t0 = performance.now();
    await store.ensureIndexes(embedder.dimensions);
    indexMs = performance.now() - t0;
  }
  const retriever = memoryIndex(store, new Map([[personaId, sp]]));
  // Queries: 8 words of a random chunk (so each has a known target), mixed order.
  const queries = Array.from({ length: cfg.queries }, () => {
    const target = Math.floor(r() * texts.length);
    const words = texts[target].split(' ');
    const start = Math.floor(r() * Math.max(1, words.length - 8));
    return { target: `s${target}`, text: words.slice(start, start + 8).join(' ') };
  });
  const out = { chunks: texts.length, ingest_chunks_per_s: round(texts.length / (ingestMs / 1000), 1), embed_share: round(embedMs / ingestMs, 2), index_build_s: round(indexMs / 1000, 1) };
  for (const mode of ['dense', 'hybrid']) {
    // Warm-up: the first searches load indexes and caches.
    for (const q of queries.slice(0, 5)) await retriever.retrieve({ ownerId: 'bench', personaId, query: q.text, topK: 10, mode, rerank: false, queryRewrite: false });
    const ms = [];
    let found = 0;
    for (const q of queries) {
      const t0 = performance.now();
      const got = await retriever.retrieve({ ownerId: 'bench', personaId, query: q.text, topK: 10, mode, rerank: false, queryRewrite: false });
      ms.push(performance.now() - t0);
      if (got.some((h) => h.id === q.target)) found++;
    }
    ms.sort((a, b) => a - b);
    out[mode] = { p50_ms: round(pct(ms, 50), 2), p99_ms: round(pct(ms, 99), 2), target_in_top10: round(found / queries.length) };
  }
  return out;
}

async function openStore(kind) {
  if (kind === 'lancedb') {
    const dir = mkdtempSync(join(tmpdir(), 'bench-lance-'));
    const store = await LanceVectorStore.open(dir, logger);
    return { store, cleanup: async () => rmSync(dir, { recursive: true, force: true }) };
  }
  const address = process.env.MILVUS_ADDRESS;
  const prefix = `bench_${Date.now().toString(36)}`;
  const store = await MilvusVectorStore.open({ address, collection: prefix, dimensions: embedder.dimensions, logger, timeoutMs: 120_000 });
  return {
    store,
    cleanup: async () => {
      const admin = new MilvusClient({ address, logLevel: 'error' });
      admin.connectPromise.catch(() => undefined);
      const all = await admin.showCollections().catch(() => undefined);
      for (const c of all?.data ?? []) if (c.name.startsWith(`${prefix}_d`)) await admin.dropCollection({ collection_name: c.name }).catch(() => undefined);
      await admin.closeConnection().catch(() => undefined);
    },
  };
}

const results = { started_at: new Date().toISOString(), machine: { cpus: cpus().length, cpu: cpus()[0]?.model, memory_gb: round(totalmem() / 2 ** 30, 1), node: process.version }, config: cfg, embedder: embedder.name, stores: {} };
for (const kind of cfg.stores) {
  if (kind === 'milvus' && !process.env.MILVUS_ADDRESS) {
    console.log('milvus: skipped (MILVUS_ADDRESS is unset; run scripts/infra up milvus and eval "$(scripts/infra env)")');
    results.stores.milvus = { skipped: 'MILVUS_ADDRESS unset' };
    continue;
  }
  if (kind !== 'lancedb' && kind !== 'milvus') throw new Error(`unknown store ${kind}`);
  console.log(`${kind}: quality on ${corpus.questions.length} questions…`);
  const { store, cleanup } = await openStore(kind);
  try {
    const q = await quality(store);
    console.log(`${kind}: ${cfg.scaleChunks} synthetic chunks…`);
    const s = cfg.scaleChunks > 0 ? await scale(store, kind) : undefined;
    results.stores[kind] = { quality: q, ...(s ? { scale: s } : {}) };
  } finally {
    await store.close();
    await cleanup();
  }
}
results.finished_at = new Date().toISOString();

const rows = [];
for (const [kind, r] of Object.entries(results.stores)) {
  if (r.skipped) continue;
  for (const c of CONFIGS) rows.push({ store: kind, measure: `${c.name}`, 'recall@5': r.quality[c.name].recall_at_5, 'MRR@10': r.quality[c.name].mrr_at_10, 'p50 ms (101 q)': r.quality[c.name].p50_ms });
}
console.log(`\nquality: ${corpus.questions.length} questions, ${results.stores.lancedb?.quality?.chunks ?? ''} chunks, embedder ${embedder.name}`);
console.table(rows);
const srows = [];
for (const [kind, r] of Object.entries(results.stores)) {
  if (!r.scale) continue;
  srows.push({
    store: kind,
    chunks: r.scale.chunks,
    'ingest chunks/s': r.scale.ingest_chunks_per_s,
    'index build s': r.scale.index_build_s,
    'dense p50 ms': r.scale.dense.p50_ms,
    'dense p99 ms': r.scale.dense.p99_ms,
    'hybrid p50 ms': r.scale.hybrid.p50_ms,
    'hybrid p99 ms': r.scale.hybrid.p99_ms,
    'dense target@10': r.scale.dense.target_in_top10,
    'hybrid target@10': r.scale.hybrid.target_in_top10,
  });
}
if (srows.length) {
  console.log(`\nscale: one persona, batches of ${cfg.batch}, ${cfg.queries} queries per mode`);
  console.table(srows);
}
mkdirSync(join(ROOT, 'bench-results'), { recursive: true });
const file = join(ROOT, 'bench-results', `retrieval-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
console.log(`\nwrote ${file}`);
