import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import * as lancedb from '@lancedb/lancedb';
import { Field, FixedSizeList, Float32, Schema, Utf8 } from 'apache-arrow';
import type { Logger } from '@chat/logger';
import type { VectorStore } from '../../domain/ports.js';
import type { ScoredChunk, StoredChunk } from '../../domain/types.js';

/** The table that holds every persona's chunks. */
export const CHUNKS_TABLE = 'chunks';

/** sqlString quotes a value as a SQL string literal for a LanceDB filter. */
export function sqlString(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

function chunkSchema(dimensions: number): Schema {
  return new Schema([
    new Field('id', new Utf8(), false),
    new Field('persona_id', new Utf8(), false),
    new Field('source_id', new Utf8(), false),
    new Field('title', new Utf8(), false),
    new Field('url', new Utf8(), false),
    new Field('text', new Utf8(), false),
    new Field('vector', new FixedSizeList(dimensions, new Field('item', new Float32(), true)), false),
  ]);
}

interface ChunkRow {
  id: string;
  source_id: string;
  title: string;
  url: string;
  text: string;
  _distance: number;
}

/**
 * LanceVectorStore keeps chunks in one LanceDB table (created on the first upsert) and searches
 * them by cosine distance within one persona. Writes run one at a time.
 */
export class LanceVectorStore implements VectorStore {
  private table: lancedb.Table | undefined;
  private writes: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly db: lancedb.Connection,
    private readonly logger: Logger,
  ) {}

  /** open connects to (and creates) the directory and opens the chunks table when it exists. */
  static async open(dir: string, logger: Logger): Promise<LanceVectorStore> {
    const path = resolve(dir);
    mkdirSync(path, { recursive: true });
    const db = await lancedb.connect(path);
    const store = new LanceVectorStore(db, logger);
    if ((await db.tableNames()).includes(CHUNKS_TABLE)) store.table = await db.openTable(CHUNKS_TABLE);
    logger.info('vector store opened', { dir: path, table_exists: store.table !== undefined });
    return store;
  }

  /** serial runs one write after the previous one, whatever its outcome. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.writes.then(fn, fn);
    this.writes = run.catch(() => undefined);
    return run;
  }

  private async tableFor(dimensions: number): Promise<lancedb.Table> {
    if (this.table) return this.table;
    this.table = await this.db.createEmptyTable(CHUNKS_TABLE, chunkSchema(dimensions), { mode: 'create', existOk: true });
    this.logger.info('created the vector table', { table: CHUNKS_TABLE, dimensions });
    return this.table;
  }

  upsert(chunks: readonly StoredChunk[]): Promise<void> {
    if (chunks.length === 0) return Promise.resolve();
    return this.serial(async () => {
      this.assertOpen();
      const dimensions = chunks[0]!.vector.length;
      if (chunks.some((c) => c.vector.length !== dimensions)) throw new Error('chunks of one upsert must have vectors of one size');
      const table = await this.tableFor(dimensions);
      const rows = chunks.map((c) => ({
        id: c.id,
        persona_id: c.personaId,
        source_id: c.sourceId,
        title: c.title,
        url: c.url,
        text: c.text,
        vector: Array.from(c.vector),
      }));
      const data = lancedb.makeArrowTable(rows, { schema: chunkSchema(dimensions) });
      await table.mergeInsert('id').whenMatchedUpdateAll().whenNotMatchedInsertAll().execute(data);
    });
  }

  async search(personaId: string, vector: readonly number[], topK: number): Promise<ScoredChunk[]> {
    this.assertOpen();
    const table = this.table;
    if (!table || topK <= 0) return [];
    const rows = (await table
      .vectorSearch(Array.from(vector))
      .distanceType('cosine')
      .where(`persona_id = ${sqlString(personaId)}`)
      .select(['id', 'source_id', 'title', 'url', 'text', '_distance'])
      .limit(topK)
      .toArray()) as ChunkRow[];
    return rows.map((r) => ({
      id: r.id,
      sourceId: r.source_id,
      title: r.title,
      url: r.url,
      text: r.text,
      score: 1 - Number(r._distance),
    }));
  }

  deleteBySource(sourceId: string): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      if (this.table) await this.table.delete(`source_id = ${sqlString(sourceId)}`);
    });
  }

  deleteByPersona(personaId: string): Promise<void> {
    return this.serial(async () => {
      this.assertOpen();
      if (this.table) await this.table.delete(`persona_id = ${sqlString(personaId)}`);
    });
  }

  /** count is the number of chunks (of one persona), for tests and diagnostics. */
  async count(personaId?: string): Promise<number> {
    if (!this.table) return 0;
    return this.table.countRows(personaId === undefined ? undefined : `persona_id = ${sqlString(personaId)}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.serial(async () => {
      this.closed = true;
      this.table?.close();
      this.db.close();
    });
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('the vector store is closed');
  }
}
