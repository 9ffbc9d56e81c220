import { DataType, FunctionType, MilvusClient, type ConsistencyLevelEnum, type FieldType, type ResStatus } from '@zilliz/milvus2-sdk-node';
import type { Logger } from '@chat/logger';
import { tokens } from '../../domain/hash-embedder.js';
import type { VectorStore } from '../../domain/ports.js';
import type { ScoredChunk, SpaceRef, StoredChunk } from '../../domain/types.js';

/**
 * The default name prefix of the chunk collections: one collection per vector dimension,
 * `<prefix>_d<dimension>` (e.g. chat_chunks_v2_d384), holding every persona's spaces of that size.
 */
export const DEFAULT_MILVUS_COLLECTION = 'chat_chunks_v2';

/** Byte limits (UTF-8) of the VarChar fields. Ids of this system are at most 128 characters. */
export const MILVUS_LIMITS = { id: 256, title: 1024, url: 2048, text: 65_535 } as const;

const VECTOR_FIELD = 'vector';
/** The BM25 sparse vector Milvus derives from `text` (a BM25 function); never written by us. */
const SPARSE_FIELD = 'sparse';
const OUTPUT_FIELDS = ['chunk_id', 'source_id', 'title', 'url', 'text'];
const FIELDS = ['id', 'chunk_id', 'persona_id', 'space_id', 'source_id', 'title', 'url', 'text', SPARSE_FIELD, VECTOR_FIELD];
/** Rows per page when reading a source's chunks back. */
const QUERY_PAGE = 1_000;
/** Rows per upsert request: far below Milvus' 64 MB gRPC message limit even with 64 KB texts. */
const UPSERT_BATCH = 256;
/** Milvus caps limit (topK) at 16384. */
const MAX_TOP_K = 16_384;
/**
 * Consistency levels by name. The SDK's search does `consistency_level || <collection default>`,
 * so the numeric ConsistencyLevelEnum.Strong (0) would silently become the collection's default;
 * the proto field takes the enum's name as well.
 */
const STRONG = 'Strong' as unknown as ConsistencyLevelEnum;
const BOUNDED = 'Bounded' as unknown as ConsistencyLevelEnum;
/** Milvus' own status code (and legacy error code) for "collection not loaded". */
const COLLECTION_NOT_LOADED = 101;

/** A collection name Milvus accepts: a letter or underscore, then letters, digits, underscores. */
export const MILVUS_COLLECTION_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

/**
 * milvusString quotes a value as a double-quoted string literal of a Milvus boolean expression.
 * Backslashes and quotes are escaped; control characters (which no id of this system contains)
 * are refused rather than escaped, so the literal reads the same in every Milvus version.
 */
export function milvusString(value: string): string {
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new Error('a filter value must not contain control characters');
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** truncateUtf8 cuts a string to at most maxBytes of UTF-8, never inside a character. */
export function truncateUtf8(value: string, maxBytes: number): string {
  if (Buffer.byteLength(value, 'utf8') <= maxBytes) return value;
  let bytes = 0;
  let end = 0;
  for (const ch of value) {
    // for…of walks code points, so a surrogate pair is never split.
    const n = Buffer.byteLength(ch, 'utf8');
    if (bytes + n > maxBytes) break;
    bytes += n;
    end += ch.length;
  }
  return value.slice(0, end);
}

/** MilvusStoreOptions configure a MilvusVectorStore. */
export interface MilvusStoreOptions {
  /** host:port of the Milvus (or milvus-lite) gRPC endpoint. */
  address: string;
  /** The name prefix of the collections (one per vector dimension); created when missing. Default chat_chunks_v2. */
  collection?: string;
  /** The dimension whose collection is opened (and created) at once, to fail early; others open on first use. */
  dimensions: number;
  logger: Logger;
  /** Optional credentials (user:password or an API key) for a secured Milvus. */
  token?: string;
  /** Timeout of one Milvus request (default 30 s). */
  timeoutMs?: number;
  /**
   * How long after a write of a persona its searches run with Strong consistency, so that ingest
   * then search sees the chunks (read-your-writes). Must exceed Milvus' Bounded staleness
   * (common.gracefulTime, 5 s by default). Default 10 s.
   */
  readYourWritesMs?: number;
  /**
   * How long until a write is visible to Bounded searches of other processes (Milvus'
   * common.gracefulTime, 5 s by default). Default 5 s.
   */
  settleMs?: number;
}

interface Hit {
  chunk_id: string;
  source_id: string;
  title: string;
  url: string;
  text: string;
  score: number;
  vector?: number[];
}

/** MilvusError is a Milvus request that answered with a failure status. */
export class MilvusError extends Error {
  constructor(
    what: string,
    readonly status: ResStatus,
  ) {
    super(`milvus: ${what} failed: ${status.reason || status.error_code} (code ${status.code ?? status.error_code})`);
    this.name = 'MilvusError';
  }
}

function failed(status: ResStatus | undefined): boolean {
  if (!status) return false;
  return (status.code !== undefined && status.code !== 0) || (status.error_code !== undefined && status.error_code !== 'Success' && status.error_code !== 0 && (status.error_code as unknown) !== '0');
}

function check<T extends { status?: ResStatus } | ResStatus>(what: string, res: T): T {
  const status = (res && 'status' in res && res.status ? res.status : res) as ResStatus;
  if (failed(status)) throw new MilvusError(what, status);
  return res;
}

function notLoaded(status: ResStatus | undefined): boolean {
  if (!status) return false;
  return status.code === COLLECTION_NOT_LOADED || (status.error_code as unknown) === COLLECTION_NOT_LOADED || /not loaded|NotLoaded|call load\(\)/i.test(status.reason ?? '');
}

function alreadyExists(status: ResStatus | undefined): boolean {
  return !!status && /already exist/i.test(status.reason ?? '');
}

/** rowId is the primary key of a chunk in a space: the same chunk may live in two spaces (re-embed). */
function rowId(spaceId: string, chunkId: string): string {
  return `${spaceId}:${chunkId}`;
}

/**
 * MilvusVectorStore keeps chunks in Milvus, one collection per vector dimension, every persona's
 * spaces of that size together. Searches filter by persona and space inside the query (never
 * after it). Each collection has an explicit HNSW/COSINE index on the vectors and a BM25 function
 * with a sparse inverted index on the text, so lexical search runs in Milvus too. Writes run one
 * at a time.
 *
 * Consistency: searches run Bounded (no wait for the newest writes; cheap on a cluster), except
 * for a persona written by this store within readYourWritesMs, whose searches run Strong so an
 * ingest is visible to the very next search. (The Node SDK cannot pass a guarantee timestamp, so
 * its "Session" level gives no read-your-writes on a real cluster.)
 */
export class MilvusVectorStore implements VectorStore {
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** Persona id -> time of its last write; '' stands for writes of unknown personas. */
  private readonly recentWrites = new Map<string, number>();
  /** Collection name -> its ensure (create, index, load) in progress or done. */
  private readonly collections = new Map<string, Promise<void>>();
  private readonly loading = new Map<string, Promise<void>>();

  private constructor(
    private readonly client: MilvusClient,
    /** The collection name prefix. */
    readonly collection: string,
    private readonly logger: Logger,
    private readonly readYourWritesMs: number,
    /** How long until a write is visible to every reader (Bounded staleness). */
    readonly settleMs: number,
  ) {}

  /** open connects, and creates (when missing), indexes and loads the collection of the given dimension. */
  static async open(options: MilvusStoreOptions): Promise<MilvusVectorStore> {
    const prefix = options.collection ?? DEFAULT_MILVUS_COLLECTION;
    if (!MILVUS_COLLECTION_NAME.test(`${prefix}_d1`) || prefix.length > 200) throw new Error(`invalid Milvus collection name '${prefix}'`);
    if (!Number.isInteger(options.dimensions) || options.dimensions <= 0) throw new Error('the vector dimension must be a positive integer');
    const client = new MilvusClient({
      address: options.address,
      token: options.token,
      timeout: options.timeoutMs ?? 30_000,
      logLevel: 'error',
    });
    // The constructor starts a Connect call that nothing awaits; a refused connection would
    // otherwise be an unhandled rejection. Requests report their own errors.
    client.connectPromise.catch(() => undefined);
    const store = new MilvusVectorStore(client, prefix, options.logger, options.readYourWritesMs ?? 10_000, options.settleMs ?? 5_000);
    try {
      await store.ensure(options.dimensions);
    } catch (err) {
      await client.closeConnection().catch(() => undefined);
      throw err;
    }
    options.logger.info('vector store opened', { store: 'milvus', address: options.address, collection: store.collectionOf(options.dimensions), dimensions: options.dimensions });
    return store;
  }

  /** collectionOf names the collection of one vector dimension. */
  collectionOf(dimensions: number): string {
    if (!Number.isInteger(dimensions) || dimensions <= 0 || dimensions > 32_768) throw new Error(`invalid vector dimension ${dimensions}`);
    return `${this.collection}_d${dimensions}`;
  }

  /** ensure makes the collection of a dimension ready (once per store; again after a failure). */
  private ensure(dimensions: number): Promise<void> {
    const name = this.collectionOf(dimensions);
    let p = this.collections.get(name);
    if (!p) {
      p = (async () => {
        await this.ensureCollection(name, dimensions);
        await this.load(name);
      })();
      this.collections.set(name, p);
      p.catch(() => this.collections.delete(name));
    }
    return p;
  }

  private async ensureCollection(collection: string, dimensions: number): Promise<void> {
    const { client } = this;
    const has = check('HasCollection', await client.hasCollection({ collection_name: collection }));
    if (!has.value) {
      const fields: FieldType[] = [
        { name: 'id', data_type: DataType.VarChar, is_primary_key: true, autoID: false, max_length: MILVUS_LIMITS.id * 2 },
        { name: 'chunk_id', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.id },
        { name: 'persona_id', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.id },
        { name: 'space_id', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.id },
        { name: 'source_id', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.id },
        { name: 'title', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.title },
        { name: 'url', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.url },
        // The analyzer feeds the BM25 function (standard tokenizer, lower-cased).
        { name: 'text', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.text, enable_analyzer: true, analyzer_params: { tokenizer: 'standard', filter: ['lowercase'] } },
        { name: SPARSE_FIELD, data_type: DataType.SparseFloatVector },
        { name: VECTOR_FIELD, data_type: DataType.FloatVector, dim: dimensions },
      ];
      const created = await client.createCollection({
        collection_name: collection,
        description: 'chat RAG chunks (one row per embedded chunk of a knowledge source, per embedding space)',
        fields,
        functions: [{ name: 'text_bm25', type: FunctionType.BM25, input_field_names: ['text'], output_field_names: [SPARSE_FIELD], params: {} }],
        consistency_level: 'Bounded',
        enable_dynamic_field: false,
      });
      // Another instance may have created it at the same time.
      if (!alreadyExists(created)) {
        check('CreateCollection', created);
        this.logger.info('created the milvus collection', { collection, dimensions });
      }
    }
    const described = check('DescribeCollection', await client.describeCollection({ collection_name: collection }));
    const fields = described.schema?.fields ?? [];
    for (const name of FIELDS) {
      if (!fields.some((f) => f.name === name)) throw new Error(`milvus collection '${collection}' has no field '${name}': not a chunk collection of this service (version 2); use another MILVUS_COLLECTION`);
    }
    const vector = fields.find((f) => f.name === VECTOR_FIELD)!;
    const dim = Number(vector.type_params?.find((p) => p.key === 'dim')?.value ?? vector.dim);
    if (dim !== dimensions) throw new Error(`milvus collection '${collection}' stores ${dim}-dimensional vectors, not ${dimensions}`);
    await this.ensureIndex(collection, VECTOR_FIELD, 'COSINE', { index_name: `${VECTOR_FIELD}_hnsw`, index_type: 'HNSW', params: { M: 16, efConstruction: 200 } });
    await this.ensureIndex(collection, SPARSE_FIELD, 'BM25', { index_name: `${SPARSE_FIELD}_bm25`, index_type: 'SPARSE_INVERTED_INDEX', params: {} });
  }

  /** ensureIndex creates an index explicitly (Milvus would not search an unindexed field), or checks the existing one's metric. */
  private async ensureIndex(collection: string, field: string, metric: string, spec: { index_name: string; index_type: string; params: Record<string, number> }): Promise<void> {
    const { client } = this;
    const described = await client.describeIndex({ collection_name: collection, field_name: field });
    const existing = described.index_descriptions?.find((d) => d.field_name === field);
    if (!failed(described.status) && existing) {
      const have = existing.params?.find((p) => p.key === 'metric_type')?.value;
      if (have && String(have).toUpperCase() !== metric) throw new Error(`milvus collection '${collection}' has a ${String(have)} index on '${field}'; this service needs ${metric}`);
      return;
    }
    const created = await client.createIndex({ collection_name: collection, field_name: field, metric_type: metric, ...spec });
    if (!alreadyExists(created)) check('CreateIndex', created);
    this.logger.info('created a milvus index', { collection, field, index_type: spec.index_type, metric_type: metric });
  }

  /** load loads a collection into memory (one load at a time; needed again after a server restart). */
  private load(collection: string): Promise<void> {
    let p = this.loading.get(collection);
    if (!p) {
      p = (async () => {
        try {
          check('LoadCollection', await this.client.loadCollectionSync({ collection_name: collection }));
        } finally {
          this.loading.delete(collection);
        }
      })();
      this.loading.set(collection, p);
    }
    return p;
  }

  /** withLoad runs a read; when Milvus says the collection is not loaded (after a restart), it loads it and runs the read again. */
  private async withLoad<R extends { status?: ResStatus }>(collection: string, what: string, fn: () => Promise<R>): Promise<R> {
    let res = await fn();
    if (notLoaded(res.status)) {
      this.logger.warn('milvus collection not loaded; loading it', { collection });
      await this.load(collection);
      res = await fn();
    }
    return check(what, res);
  }

  /** serial runs one write after the previous one, whatever its outcome. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writes.then(fn, fn);
    this.writes = run.catch(() => undefined);
    return run;
  }

  private wrote(personaIds: Iterable<string>): void {
    const now = Date.now();
    for (const p of personaIds) this.recentWrites.set(p, now);
    // Forget writes older than the window, so the map stays small.
    for (const [p, at] of this.recentWrites) if (now - at > this.readYourWritesMs) this.recentWrites.delete(p);
  }

  private consistencyFor(personaId: string): ConsistencyLevelEnum {
    const now = Date.now();
    const recent = (key: string) => {
      const at = this.recentWrites.get(key);
      return at !== undefined && now - at <= this.readYourWritesMs;
    };
    return recent(personaId) || recent('') ? STRONG : BOUNDED;
  }

  /** spaceFilter is the persona and space condition every read of a space carries. */
  private spaceFilter(space: SpaceRef): string {
    return `persona_id == ${milvusString(space.personaId)} && space_id == ${milvusString(space.id)}`;
  }

  /** existingCollections lists this store's collections (every dimension). */
  private async existingCollections(): Promise<string[]> {
    const res = check('ShowCollections', await this.client.showCollections());
    const pattern = new RegExp(`^${this.collection}_d\\d+$`);
    return (res.data ?? []).map((c) => c.name).filter((n) => pattern.test(n));
  }

  upsert(space: SpaceRef, chunks: readonly StoredChunk[]): Promise<void> {
    if (chunks.length === 0) return Promise.resolve();
    return this.serial(async () => {
      this.assertOpen();
      const collection = this.collectionOf(space.dimensions);
      await this.ensure(space.dimensions);
      // The last copy of an id wins, as with separate upserts.
      const byId = new Map<string, StoredChunk>();
      for (const c of chunks) {
        if (c.vector.length !== space.dimensions) throw new Error(`chunk ${c.id} has a ${c.vector.length}-dimensional vector; the space stores ${space.dimensions}`);
        if (c.personaId !== space.personaId) throw new Error(`chunk ${c.id} belongs to another persona than its space`);
        if (!c.id || Buffer.byteLength(c.id) > MILVUS_LIMITS.id) throw new Error(`invalid chunk id '${c.id.slice(0, 40)}'`);
        if (Buffer.byteLength(c.personaId) > MILVUS_LIMITS.id || Buffer.byteLength(c.sourceId) > MILVUS_LIMITS.id) throw new Error(`chunk ${c.id} has an id longer than ${MILVUS_LIMITS.id} bytes`);
        byId.delete(c.id);
        byId.set(c.id, c);
      }
      const rows = [...byId.values()].map((c) => {
        const text = truncateUtf8(c.text, MILVUS_LIMITS.text);
        if (text.length !== c.text.length) this.logger.warn('chunk text truncated to fit milvus', { chunk_id: c.id, bytes: Buffer.byteLength(c.text) });
        return {
          id: rowId(space.id, c.id),
          chunk_id: c.id,
          persona_id: c.personaId,
          space_id: space.id,
          source_id: c.sourceId,
          title: truncateUtf8(c.title, MILVUS_LIMITS.title),
          url: truncateUtf8(c.url, MILVUS_LIMITS.url),
          text,
          [VECTOR_FIELD]: Array.from(c.vector),
        };
      });
      try {
        for (let i = 0; i < rows.length; i += UPSERT_BATCH) {
          const res = await this.client.upsert({ collection_name: collection, data: rows.slice(i, i + UPSERT_BATCH) });
          check('Upsert', res);
        }
      } finally {
        // Even a failed batch may have written part of the rows.
        this.wrote([space.personaId]);
      }
    });
  }

  async search(space: SpaceRef, vector: readonly number[], topK: number): Promise<ScoredChunk[]> {
    this.assertOpen();
    if (topK <= 0) return [];
    if (vector.length !== space.dimensions) throw new Error(`the query vector has ${vector.length} dimensions; the space stores ${space.dimensions}`);
    const collection = this.collectionOf(space.dimensions);
    await this.ensure(space.dimensions);
    const limit = Math.min(Math.floor(topK), MAX_TOP_K);
    const res = await this.withLoad(collection, 'Search', () =>
      this.client.search({
        collection_name: collection,
        anns_field: VECTOR_FIELD,
        data: [Array.from(vector)],
        limit,
        filter: this.spaceFilter(space),
        output_fields: OUTPUT_FIELDS,
        metric_type: 'COSINE',
        params: { ef: Math.max(64, limit) },
        consistency_level: this.consistencyFor(space.personaId),
      }),
    );
    // COSINE in Milvus is the similarity itself (1 = same direction); float error can pass 1.
    return ((res.results ?? []) as unknown as Hit[]).map((h) => toScored(h, Math.max(-1, Math.min(1, Number(h.score)))));
  }

  async lexicalSearch(space: SpaceRef, query: string, topK: number): Promise<ScoredChunk[]> {
    this.assertOpen();
    // The query's words only: no operator or syntax of any kind reaches the server.
    const words = tokens(query).join(' ').slice(0, 4_000);
    if (topK <= 0 || !words) return [];
    const collection = this.collectionOf(space.dimensions);
    await this.ensure(space.dimensions);
    const limit = Math.min(Math.floor(topK), MAX_TOP_K);
    const res = await this.withLoad(collection, 'Search (BM25)', () =>
      this.client.search({
        collection_name: collection,
        anns_field: SPARSE_FIELD,
        data: [words],
        limit,
        filter: this.spaceFilter(space),
        output_fields: [...OUTPUT_FIELDS, VECTOR_FIELD],
        metric_type: 'BM25',
        params: { drop_ratio_search: 0 },
        consistency_level: this.consistencyFor(space.personaId),
      }),
    );
    // milvus-lite reports BM25 as a negated distance, Milvus as a positive score: the magnitude is the score.
    return ((res.results ?? []) as unknown as Hit[])
      .map((h) => toScored(h, Math.abs(Number(h.score)), true))
      .filter((h) => h.score > 0)
      .sort((a, b) => b.score - a.score);
  }

  async chunksOfSource(space: SpaceRef, sourceId: string): Promise<StoredChunk[]> {
    this.assertOpen();
    const collection = this.collectionOf(space.dimensions);
    await this.ensure(space.dimensions);
    const base = `${this.spaceFilter(space)} && source_id == ${milvusString(sourceId)}`;
    const rows: Array<Hit & { id: string }> = [];
    // A full page is split by the next character of the chunk id (ids here are UUIDs: hex digits
    // and dashes), so a source of any size is read in bounded requests without offsets.
    const read = async (prefix: string, depth: number): Promise<void> => {
      const filter = prefix ? `${base} && chunk_id like ${milvusString(`${prefix}%`)}` : base;
      const res = await this.withLoad(collection, 'Query', () =>
        this.client.query({ collection_name: collection, filter, output_fields: ['id', ...OUTPUT_FIELDS], limit: QUERY_PAGE, consistency_level: STRONG }),
      );
      const page = (res.data ?? []) as Array<Hit & { id: string }>;
      if (page.length < QUERY_PAGE) {
        rows.push(...page);
        return;
      }
      if (depth >= 8) throw new Error(`milvus: too many chunks share the id prefix '${prefix}'`);
      for (const ch of '0123456789abcdef-') await read(prefix + ch, depth + 1);
    };
    await read('', 0);
    const expected = await this.withLoad(collection, 'Query count(*)', () =>
      this.client.query({ collection_name: collection, filter: base, output_fields: ['count(*)'], consistency_level: STRONG }),
    );
    const total = Number((expected.data[0] as Record<string, unknown> | undefined)?.['count(*)'] ?? 0);
    if (total !== rows.length) throw new Error(`milvus: read ${rows.length} of the ${total} chunks of source ${sourceId} (chunk ids outside [0-9a-f-]?)`);
    const out: StoredChunk[] = rows.map((r) => ({ id: r.chunk_id, personaId: space.personaId, sourceId: r.source_id, title: r.title, url: r.url, text: r.text, vector: [] }));
    return out;
  }

  async count(space: SpaceRef): Promise<number> {
    this.assertOpen();
    const collection = this.collectionOf(space.dimensions);
    await this.ensure(space.dimensions);
    const res = await this.withLoad(collection, 'Query count(*)', () =>
      this.client.query({ collection_name: collection, filter: this.spaceFilter(space), output_fields: ['count(*)'], consistency_level: STRONG }),
    );
    return Number((res.data[0] as Record<string, unknown> | undefined)?.['count(*)'] ?? 0);
  }

  /**
   * ensureIndexes flushes the collection of a dimension: its growing segment is sealed, so Milvus
   * indexes those rows (HNSW, BM25) instead of scanning them. Milvus seals segments by itself (by
   * size and time); this is for benchmarks and operations after a bulk load.
   */
  async ensureIndexes(dimensions: number): Promise<void> {
    this.assertOpen();
    await this.ensure(dimensions);
    check('Flush', await this.client.flushSync({ collection_names: [this.collectionOf(dimensions)] }));
  }

  /** countPersona is the number of a persona's chunks in every space (for tests and diagnostics). */
  async countPersona(personaId: string): Promise<number> {
    this.assertOpen();
    let n = 0;
    for (const collection of await this.existingCollections()) {
      const res = await this.withLoad(collection, 'Query count(*)', () =>
        this.client.query({ collection_name: collection, filter: `persona_id == ${milvusString(personaId)}`, output_fields: ['count(*)'], consistency_level: STRONG }),
      );
      n += Number((res.data[0] as Record<string, unknown> | undefined)?.['count(*)'] ?? 0);
    }
    return n;
  }

  private deleteWhere(filter: string, personaIds: string[], collections?: string[]): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      try {
        for (const collection of collections ?? (await this.existingCollections())) {
          check('Delete', await this.client.delete({ collection_name: collection, filter }));
        }
      } finally {
        this.wrote(personaIds);
      }
    });
  }

  deleteBySource(sourceId: string): Promise<void> {
    return this.deleteWhere(`source_id == ${milvusString(sourceId)}`, ['']);
  }

  async deleteSpace(space: SpaceRef): Promise<void> {
    await this.ensure(space.dimensions);
    return this.deleteWhere(this.spaceFilter(space), [space.personaId], [this.collectionOf(space.dimensions)]);
  }

  deleteByPersona(personaId: string): Promise<void> {
    return this.deleteWhere(`persona_id == ${milvusString(personaId)}`, [personaId]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.serial(async () => {
      this.closed = true;
    });
    await this.client.closeConnection().catch((err: unknown) => this.logger.warn('closing the milvus connection failed', { err }));
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the vector store is closed');
  }
}

function toScored(h: Hit, score: number, withVector = false): ScoredChunk {
  return {
    id: String(h.chunk_id),
    sourceId: h.source_id,
    title: h.title,
    url: h.url,
    text: h.text,
    score,
    ...(withVector && h.vector ? { vector: Array.from(h.vector, Number) } : {}),
  };
}
