import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import * as lancedb from '@lancedb/lancedb';
import { Field, FixedSizeList, Float32, Schema, Utf8 } from 'apache-arrow';
import type { Logger } from '@chat/logger';
import { tokens } from '../../domain/hash-embedder.js';
import type { VectorStore } from '../../domain/ports.js';
import type { ScoredChunk, SpaceRef, StoredChunk } from '../../domain/types.js';

/** The name prefix of the chunk tables: one table per vector dimension, `chunks_v2_d<dimension>`. */
export const CHUNKS_TABLE = 'chunks_v2';
/** Rows from which a table gets an ANN (IVF-PQ) vector index; below it a filtered flat search is exact and fast. */
export const DEFAULT_ANN_INDEX_THRESHOLD = 50_000;
/**
 * Rows, or writes, since the last optimize after which the table is optimised: small fragments
 * compacted (every write adds one) and new rows added to the indexes.
 */
const OPTIMIZE_AFTER_ROWS = 5_000;
const OPTIMIZE_AFTER_WRITES = 100;

const VECTOR_INDEX = 'vector_idx';
const TEXT_INDEX = 'text_idx';

/** sqlString quotes a value as a SQL string literal for a LanceDB filter. */
export function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function chunkSchema(dimensions: number): Schema {
  return new Schema([
    new Field('id', new Utf8(), false),
    new Field('chunk_id', new Utf8(), false),
    new Field('persona_id', new Utf8(), false),
    new Field('space_id', new Utf8(), false),
    new Field('source_id', new Utf8(), false),
    new Field('title', new Utf8(), false),
    new Field('url', new Utf8(), false),
    new Field('text', new Utf8(), false),
    new Field('vector', new FixedSizeList(dimensions, new Field('item', new Float32(), true)), false),
  ]);
}

interface ChunkRow {
  chunk_id: string;
  source_id: string;
  title: string;
  url: string;
  text: string;
  vector?: ArrayLike<number>;
  _distance?: number;
  _score?: number;
}

const COLUMNS = ['chunk_id', 'source_id', 'title', 'url', 'text'];

/** LanceStoreOptions tune the LanceDB store. */
export interface LanceStoreOptions {
  /** Rows from which a table gets an ANN vector index (default 50 000). */
  annIndexThreshold?: number;
}

interface TableState {
  table: lancedb.Table;
  rows: number;
  /** Rows and writes since the indexes were last built or the table optimised. */
  sinceIndex: number;
  writesSinceIndex: number;
  hasAnn: boolean;
  hasFts: boolean;
}

/**
 * LanceVectorStore keeps chunks in LanceDB, one table per vector dimension (created on first
 * use), every persona's spaces of that size together. Searches filter by persona and space
 * inside the query (prefilter). The text has a full-text (BM25) index from the first write; the
 * vectors get an IVF-PQ index once a table holds annIndexThreshold rows, and both are brought up
 * to date after every REINDEX_AFTER_ROWS rows written (rows not yet indexed are still searched,
 * by a flat scan). Writes run one at a time.
 */
export class LanceVectorStore implements VectorStore {
  private readonly tables = new Map<number, TableState>();
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly annThreshold: number;

  private constructor(
    private readonly db: lancedb.Connection,
    private readonly logger: Logger,
    options: LanceStoreOptions,
  ) {
    this.annThreshold = options.annIndexThreshold ?? DEFAULT_ANN_INDEX_THRESHOLD;
  }

  /** open connects to (and creates) the directory and opens the chunk tables that exist. */
  static async open(dir: string, logger: Logger, options: LanceStoreOptions = {}): Promise<LanceVectorStore> {
    const path = resolve(dir);
    mkdirSync(path, { recursive: true });
    const db = await lancedb.connect(path);
    const store = new LanceVectorStore(db, logger, options);
    for (const name of await db.tableNames()) {
      const m = /^chunks_v2_d(\d+)$/.exec(name);
      if (!m) continue;
      const table = await db.openTable(name);
      const indices = await table.listIndices();
      store.tables.set(Number(m[1]), {
        table,
        rows: await table.countRows(),
        sinceIndex: 0,
        writesSinceIndex: 0,
        hasAnn: indices.some((i) => i.name === VECTOR_INDEX),
        hasFts: indices.some((i) => i.name === TEXT_INDEX),
      });
    }
    logger.info('vector store opened', { store: 'lancedb', dir: path, tables: [...store.tables.keys()].map((d) => `${CHUNKS_TABLE}_d${d}`) });
    return store;
  }

  /** serial runs one write after the previous one, whatever its outcome. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writes.then(fn, fn);
    this.writes = run.catch(() => undefined);
    return run;
  }

  private async stateFor(dimensions: number): Promise<TableState> {
    const have = this.tables.get(dimensions);
    if (have) return have;
    if (!Number.isInteger(dimensions) || dimensions <= 0 || dimensions > 32_768) throw new Error(`invalid vector dimension ${dimensions}`);
    const name = `${CHUNKS_TABLE}_d${dimensions}`;
    const table = await this.db.createEmptyTable(name, chunkSchema(dimensions), { mode: 'create', existOk: true });
    const state: TableState = { table, rows: await table.countRows(), sinceIndex: 0, writesSinceIndex: 0, hasAnn: false, hasFts: false };
    this.tables.set(dimensions, state);
    this.logger.info('created the vector table', { table: name, dimensions });
    return state;
  }

  /** maintain builds the indexes a table is due for and optimises it when due (or when forced); runs inside a write. */
  private async maintain(state: TableState, dimensions: number, force = false): Promise<void> {
    const { table } = state;
    if (!state.hasFts && state.rows > 0) {
      await table.createIndex('text', { config: lancedb.Index.fts({ withPosition: false }), name: TEXT_INDEX, replace: true });
      state.hasFts = true;
    }
    if (!state.hasAnn && state.rows >= this.annThreshold) {
      const started = Date.now();
      // About sqrt(n) partitions; sub-vectors of 8 dimensions (or fewer when they do not divide).
      const numPartitions = Math.max(1, Math.round(Math.sqrt(state.rows)));
      const numSubVectors = dimensions % 8 === 0 ? dimensions / 8 : dimensions % 4 === 0 ? dimensions / 4 : 1;
      await table.createIndex('vector', { config: lancedb.Index.ivfPq({ distanceType: 'cosine', numPartitions, numSubVectors }), name: VECTOR_INDEX, replace: true });
      state.hasAnn = true;
      this.logger.info('built the ANN vector index', { table: `${CHUNKS_TABLE}_d${dimensions}`, rows: state.rows, partitions: numPartitions, ms: Date.now() - started });
    }
    if (state.sinceIndex >= OPTIMIZE_AFTER_ROWS || state.writesSinceIndex >= OPTIMIZE_AFTER_WRITES || (force && state.writesSinceIndex > 0)) {
      // Versions older than ten minutes are removed, so frequent writes do not pile up old files.
      await table.optimize({ cleanupOlderThan: new Date(Date.now() - 10 * 60_000) });
      state.sinceIndex = 0;
      state.writesSinceIndex = 0;
    }
  }

  /** ensureIndexes builds any index a table is due for and optimises it now (for benchmarks and operations; writes do it as they go). */
  ensureIndexes(dimensions: number): Promise<{ ann: boolean; fts: boolean }> {
    return this.serial(async () => {
      const state = await this.stateFor(dimensions);
      await this.maintain(state, dimensions, true);
      return { ann: state.hasAnn, fts: state.hasFts };
    });
  }

  private spaceFilter(space: SpaceRef): string {
    return `persona_id = ${sqlString(space.personaId)} AND space_id = ${sqlString(space.id)}`;
  }

  upsert(space: SpaceRef, chunks: readonly StoredChunk[]): Promise<void> {
    if (chunks.length === 0) return Promise.resolve();
    return this.serial(async () => {
      this.assertOpen();
      for (const c of chunks) {
        if (c.vector.length !== space.dimensions) throw new Error(`chunk ${c.id} has a ${c.vector.length}-dimensional vector; the space stores ${space.dimensions}`);
        if (c.personaId !== space.personaId) throw new Error(`chunk ${c.id} belongs to another persona than its space`);
      }
      const state = await this.stateFor(space.dimensions);
      // The last copy of an id wins, as with separate upserts.
      const byId = new Map<string, StoredChunk>();
      for (const c of chunks) byId.set(c.id, c);
      const rows = [...byId.values()].map((c) => ({
        id: `${space.id}:${c.id}`,
        chunk_id: c.id,
        persona_id: c.personaId,
        space_id: space.id,
        source_id: c.sourceId,
        title: c.title,
        url: c.url,
        text: c.text,
        vector: Array.from(c.vector),
      }));
      const data = lancedb.makeArrowTable(rows, { schema: chunkSchema(space.dimensions) });
      await state.table.mergeInsert('id').whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(data);
      state.rows = await state.table.countRows();
      state.sinceIndex += rows.length;
      state.writesSinceIndex++;
      await this.maintain(state, space.dimensions);
    });
  }

  async search(space: SpaceRef, vector: readonly number[], topK: number): Promise<ScoredChunk[]> {
    this.assertOpen();
    if (vector.length !== space.dimensions) throw new Error(`the query vector has ${vector.length} dimensions; the space stores ${space.dimensions}`);
    const state = this.tables.get(space.dimensions);
    if (!state || topK <= 0) return [];
    let q = state.table.vectorSearch(Array.from(vector)).distanceType('cosine').where(this.spaceFilter(space));
    // With the IVF-PQ index: probe more partitions and re-rank by exact distance, for recall.
    if (state.hasAnn) q = q.nprobes(32).refineFactor(4);
    const rows = (await q
      .select([...COLUMNS, '_distance'])
      .limit(Math.floor(topK))
      .toArray()) as ChunkRow[];
    return rows.map((r) => toScored(r, 1 - Number(r._distance)));
  }

  async lexicalSearch(space: SpaceRef, query: string, topK: number): Promise<ScoredChunk[]> {
    this.assertOpen();
    // The query's words only: no query syntax (quotes, AND, field:…) reaches the parser.
    const words = tokens(query).join(' ').slice(0, 4_000);
    const state = this.tables.get(space.dimensions);
    if (!state || !state.hasFts || topK <= 0 || !words) return [];
    const rows = (await state.table
      .query()
      .fullTextSearch(words, { columns: 'text' })
      .where(this.spaceFilter(space))
      .select([...COLUMNS, 'vector', '_score'])
      .limit(Math.floor(topK))
      .toArray()) as ChunkRow[];
    return rows
      .map((r) => toScored(r, Number(r._score), true))
      .filter((h) => h.score > 0)
      .sort((a, b) => b.score - a.score);
  }

  async chunksOfSource(space: SpaceRef, sourceId: string): Promise<StoredChunk[]> {
    this.assertOpen();
    const state = this.tables.get(space.dimensions);
    if (!state) return [];
    const rows = (await state.table
      .query()
      .where(`${this.spaceFilter(space)} AND source_id = ${sqlString(sourceId)}`)
      .select(COLUMNS)
      .toArray()) as ChunkRow[];
    return rows.map((r) => ({ id: r.chunk_id, personaId: space.personaId, sourceId: r.source_id, title: r.title, url: r.url, text: r.text, vector: [] }));
  }

  async count(space: SpaceRef): Promise<number> {
    const state = this.tables.get(space.dimensions);
    return state ? state.table.countRows(this.spaceFilter(space)) : 0;
  }

  /** countPersona is the number of a persona's chunks in every space (for tests and diagnostics). */
  async countPersona(personaId: string): Promise<number> {
    let n = 0;
    for (const s of this.tables.values()) n += await s.table.countRows(`persona_id = ${sqlString(personaId)}`);
    return n;
  }

  private deleteWhere(filter: string, dimensions?: number): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      for (const [dim, state] of this.tables) {
        if (dimensions !== undefined && dim !== dimensions) continue;
        await state.table.delete(filter);
        state.rows = await state.table.countRows();
      }
    });
  }

  deleteBySource(sourceId: string): Promise<void> {
    return this.deleteWhere(`source_id = ${sqlString(sourceId)}`);
  }

  deleteSpace(space: SpaceRef): Promise<void> {
    return this.deleteWhere(this.spaceFilter(space), space.dimensions);
  }

  deleteByPersona(personaId: string): Promise<void> {
    return this.deleteWhere(`persona_id = ${sqlString(personaId)}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.serial(async () => {
      this.closed = true;
      for (const s of this.tables.values()) s.table.close();
      this.db.close();
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the vector store is closed');
  }
}

function toScored(r: ChunkRow, score: number, withVector = false): ScoredChunk {
  return {
    id: r.chunk_id,
    sourceId: r.source_id,
    title: r.title,
    url: r.url,
    text: r.text,
    score,
    ...(withVector && r.vector ? { vector: Array.from(r.vector, Number) } : {}),
  };
}
