import { DataType, MilvusClient, type ConsistencyLevelEnum, type FieldType, type ResStatus } from '@zilliz/milvus2-sdk-node';
import type { Logger } from '@chat/logger';
import type { VectorStore } from '../../domain/ports.js';
import type { ScoredChunk, StoredChunk } from '../../domain/types.js';

/** The default collection that holds every persona's chunks. */
export const DEFAULT_MILVUS_COLLECTION = 'chat_chunks_v1';

/** Byte limits (UTF-8) of the VarChar fields. Ids of this system are at most 128 characters. */
export const MILVUS_LIMITS = { id: 256, title: 1024, url: 2048, text: 65_535 } as const;

const VECTOR_FIELD = 'vector';
const OUTPUT_FIELDS = ['id', 'source_id', 'title', 'url', 'text'];
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
  /** The collection; created when missing. Default chat_chunks_v1. */
  collection?: string;
  /** The embedding size: the collection's vector dimension. */
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
}

interface Hit {
  id: string;
  source_id: string;
  title: string;
  url: string;
  text: string;
  score: number;
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

/**
 * MilvusVectorStore keeps chunks in one Milvus collection and searches them by cosine similarity
 * within one persona (a filter inside the query, never after it). Writes run one at a time.
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
  private loading: Promise<void> | undefined;

  private constructor(
    private readonly client: MilvusClient,
    readonly collection: string,
    readonly dimensions: number,
    private readonly logger: Logger,
    private readonly readYourWritesMs: number,
  ) {}

  /** open connects, creates the collection and its index when missing, and loads it. */
  static async open(options: MilvusStoreOptions): Promise<MilvusVectorStore> {
    const collection = options.collection ?? DEFAULT_MILVUS_COLLECTION;
    if (!MILVUS_COLLECTION_NAME.test(collection)) throw new Error(`invalid Milvus collection name '${collection}'`);
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
    const store = new MilvusVectorStore(client, collection, options.dimensions, options.logger, options.readYourWritesMs ?? 10_000);
    try {
      await store.ensureCollection();
      await store.load();
    } catch (err) {
      await client.closeConnection().catch(() => undefined);
      throw err;
    }
    options.logger.info('vector store opened', { store: 'milvus', address: options.address, collection, dimensions: options.dimensions });
    return store;
  }

  private async ensureCollection(): Promise<void> {
    const { client, collection, dimensions } = this;
    const has = check('HasCollection', await client.hasCollection({ collection_name: collection }));
    if (!has.value) {
      const fields: FieldType[] = [
        { name: 'id', data_type: DataType.VarChar, is_primary_key: true, autoID: false, max_length: MILVUS_LIMITS.id },
        { name: 'persona_id', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.id },
        { name: 'source_id', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.id },
        { name: 'title', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.title },
        { name: 'url', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.url },
        { name: 'text', data_type: DataType.VarChar, max_length: MILVUS_LIMITS.text },
        { name: VECTOR_FIELD, data_type: DataType.FloatVector, dim: dimensions },
      ];
      const created = await client.createCollection({
        collection_name: collection,
        description: 'chat RAG chunks (one row per embedded chunk of a knowledge source)',
        fields,
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
    for (const name of ['id', 'persona_id', 'source_id', 'title', 'url', 'text', VECTOR_FIELD]) {
      if (!fields.some((f) => f.name === name)) throw new Error(`milvus collection '${collection}' has no field '${name}': not a chunk collection of this service`);
    }
    const vector = fields.find((f) => f.name === VECTOR_FIELD)!;
    const dim = Number(vector.type_params?.find((p) => p.key === 'dim')?.value ?? vector.dim);
    if (dim !== dimensions) {
      throw new Error(`milvus collection '${collection}' stores ${dim}-dimensional vectors but the embedder makes ${dimensions}: use another MILVUS_COLLECTION`);
    }
    await this.ensureIndex();
  }

  private async ensureIndex(): Promise<void> {
    const { client, collection } = this;
    const described = await client.describeIndex({ collection_name: collection, field_name: VECTOR_FIELD });
    const existing = described.index_descriptions?.find((d) => d.field_name === VECTOR_FIELD);
    if (!failed(described.status) && existing) {
      const metric = existing.params?.find((p) => p.key === 'metric_type')?.value;
      if (metric && String(metric).toUpperCase() !== 'COSINE') {
        throw new Error(`milvus collection '${collection}' has a ${String(metric)} index on '${VECTOR_FIELD}'; this service needs COSINE`);
      }
      return;
    }
    const created = await client.createIndex({
      collection_name: collection,
      field_name: VECTOR_FIELD,
      index_name: `${VECTOR_FIELD}_hnsw`,
      index_type: 'HNSW',
      metric_type: 'COSINE',
      params: { M: 16, efConstruction: 200 },
    });
    if (!alreadyExists(created)) check('CreateIndex', created);
    this.logger.info('created the milvus vector index', { collection, index_type: 'HNSW', metric_type: 'COSINE' });
  }

  /** load loads the collection into memory (one load at a time; needed again after a server restart). */
  private load(): Promise<void> {
    this.loading ??= (async () => {
      try {
        check('LoadCollection', await this.client.loadCollectionSync({ collection_name: this.collection }));
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
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

  upsert(chunks: readonly StoredChunk[]): Promise<void> {
    if (chunks.length === 0) return Promise.resolve();
    return this.serial(async () => {
      this.assertOpen();
      // The last copy of an id wins, as with separate upserts.
      const byId = new Map<string, StoredChunk>();
      for (const c of chunks) {
        if (c.vector.length !== this.dimensions) throw new Error(`chunk ${c.id} has a ${c.vector.length}-dimensional vector; the collection stores ${this.dimensions}`);
        if (!c.id || Buffer.byteLength(c.id) > MILVUS_LIMITS.id) throw new Error(`invalid chunk id '${c.id.slice(0, 40)}'`);
        if (Buffer.byteLength(c.personaId) > MILVUS_LIMITS.id || Buffer.byteLength(c.sourceId) > MILVUS_LIMITS.id) throw new Error(`chunk ${c.id} has an id longer than ${MILVUS_LIMITS.id} bytes`);
        byId.delete(c.id);
        byId.set(c.id, c);
      }
      const rows = [...byId.values()].map((c) => {
        const text = truncateUtf8(c.text, MILVUS_LIMITS.text);
        if (text.length !== c.text.length) this.logger.warn('chunk text truncated to fit milvus', { chunk_id: c.id, bytes: Buffer.byteLength(c.text) });
        return {
          id: c.id,
          persona_id: c.personaId,
          source_id: c.sourceId,
          title: truncateUtf8(c.title, MILVUS_LIMITS.title),
          url: truncateUtf8(c.url, MILVUS_LIMITS.url),
          text,
          [VECTOR_FIELD]: Array.from(c.vector),
        };
      });
      const personas = new Set(rows.map((r) => r.persona_id));
      try {
        for (let i = 0; i < rows.length; i += UPSERT_BATCH) {
          const res = await this.client.upsert({ collection_name: this.collection, data: rows.slice(i, i + UPSERT_BATCH) });
          check('Upsert', res);
        }
      } finally {
        // Even a failed batch may have written part of the rows.
        this.wrote(personas);
      }
    });
  }

  async search(personaId: string, vector: readonly number[], topK: number): Promise<ScoredChunk[]> {
    this.assertOpen();
    if (topK <= 0) return [];
    if (vector.length !== this.dimensions) throw new Error(`the query vector has ${vector.length} dimensions; the collection stores ${this.dimensions}`);
    const limit = Math.min(Math.floor(topK), MAX_TOP_K);
    const request = {
      collection_name: this.collection,
      anns_field: VECTOR_FIELD,
      data: [Array.from(vector)],
      limit,
      filter: `persona_id == ${milvusString(personaId)}`,
      output_fields: OUTPUT_FIELDS,
      metric_type: 'COSINE',
      params: { ef: Math.max(64, limit) },
      consistency_level: this.consistencyFor(personaId),
    };
    let res = await this.client.search(request);
    if (notLoaded(res.status)) {
      // After a Milvus restart the collection comes back released.
      this.logger.warn('milvus collection not loaded; loading it', { collection: this.collection });
      await this.load();
      res = await this.client.search(request);
    }
    check('Search', res);
    const hits = (res.results ?? []) as unknown as Hit[];
    return hits.map((h) => ({
      id: String(h.id),
      sourceId: h.source_id,
      title: h.title,
      url: h.url,
      text: h.text,
      // COSINE in Milvus is the similarity itself (1 = same direction); float error can pass 1.
      score: Math.max(-1, Math.min(1, Number(h.score))),
    }));
  }

  deleteBySource(sourceId: string): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      try {
        check('Delete', await this.client.delete({ collection_name: this.collection, filter: `source_id == ${milvusString(sourceId)}` }));
      } finally {
        this.wrote(['']);
      }
    });
  }

  deleteByPersona(personaId: string): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      try {
        check('Delete', await this.client.delete({ collection_name: this.collection, filter: `persona_id == ${milvusString(personaId)}` }));
      } finally {
        this.wrote([personaId]);
      }
    });
  }

  /** count is the number of chunks (of one persona), read with Strong consistency; for tests and diagnostics. */
  async count(personaId?: string): Promise<number> {
    this.assertOpen();
    const request = {
      collection_name: this.collection,
      filter: personaId === undefined ? 'id != ""' : `persona_id == ${milvusString(personaId)}`,
      output_fields: ['count(*)'],
      consistency_level: STRONG,
    };
    let res = await this.client.query(request);
    if (notLoaded(res.status)) {
      await this.load();
      res = await this.client.query(request);
    }
    check('Query count(*)', res);
    return Number((res.data[0] as Record<string, unknown> | undefined)?.['count(*)'] ?? 0);
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
