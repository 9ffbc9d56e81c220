import { randomUUID } from 'node:crypto';
import { AppError, Code } from '@chat/errors';
import type { Logger } from '@chat/logger';
import type { Embedder, KnowledgeWriter, SpaceRepository, VectorStore } from './ports.js';
import type { EmbedderSpec, EmbeddingSpace, StoredChunk } from './types.js';

/** ConfiguredEmbedder is the embedding model a persona's profile names now, with the key to call it. */
export interface ConfiguredEmbedder {
  spec: EmbedderSpec;
  /** The API key for an openai spec ('' for local). Never logged. */
  apiKey: string;
}

/** EmbeddingProfiles tells which embedding model a persona's API profile names (resolved at run time). */
export interface EmbeddingProfiles {
  configured(ownerId: string, personaId: string): Promise<ConfiguredEmbedder>;
}

/** EmbedderFactory makes the embedder of a spec (the local one, or an OpenAI-compatible endpoint). */
export type EmbedderFactory = (spec: EmbedderSpec, apiKey: string, dimensions?: number) => Embedder & { probe?(): Promise<number> };

/** newSpaceId makes the short id vectors of a space carry. */
export function newSpaceId(): string {
  return randomUUID().replace(/-/g, '');
}

/** sameSpec says whether two specs name the same model at the same place. */
export function sameSpec(a: EmbedderSpec, b: EmbedderSpec): boolean {
  return a.provider === b.provider && a.model === b.model && (a.provider === 'local' || a.baseUrl.replace(/\/+$/, '') === b.baseUrl.replace(/\/+$/, ''));
}

/**
 * KnowledgeIndex ties the vector store to the embedding spaces recorded in PostgreSQL: each
 * persona's knowledge lives in its active space (created from the persona's profile when the first
 * knowledge arrives), and every read and write goes to that space with that space's embedder.
 * It is the KnowledgeWriter ingestion writes through.
 */
export class KnowledgeIndex implements KnowledgeWriter {
  private readonly embedders = new Map<string, { embedder: Embedder; apiKey: string }>();
  private readonly creating = new Map<string, Promise<EmbeddingSpace>>();

  constructor(
    readonly deps: { store: VectorStore; spaces: SpaceRepository; profiles: EmbeddingProfiles; makeEmbedder: EmbedderFactory; logger: Logger },
  ) {}

  get store(): VectorStore {
    return this.deps.store;
  }

  /** activeSpace is the space retrieval reads for a persona, if it has knowledge. */
  activeSpace(personaId: string): Promise<EmbeddingSpace | undefined> {
    return this.deps.spaces.active(personaId);
  }

  /** embedderOf is the embedder of a space (its key from the persona's profile when the model is remote). */
  async embedderOf(space: EmbeddingSpace, ownerId: string): Promise<Embedder> {
    let apiKey = '';
    if (space.provider !== 'local') {
      const configured = await this.deps.profiles.configured(ownerId, space.personaId);
      apiKey = configured.apiKey;
    }
    const hit = this.embedders.get(space.id);
    if (hit && hit.apiKey === apiKey) return hit.embedder;
    const embedder = this.deps.makeEmbedder(space, apiKey, space.dimensions);
    if (this.embedders.size > 1_000) this.embedders.clear();
    this.embedders.set(space.id, { embedder, apiKey });
    return embedder;
  }

  /** newSpace records a space for the model the persona's profile names now (its dimension probed). */
  async newSpace(ownerId: string, personaId: string, state: 'building' | 'active'): Promise<{ space: EmbeddingSpace | undefined; embedder: Embedder }> {
    const { spec, apiKey } = await this.deps.profiles.configured(ownerId, personaId);
    const embedder = this.deps.makeEmbedder(spec, apiKey);
    const dimensions = embedder.dimensions || (embedder.probe ? await embedder.probe() : 0);
    if (!Number.isInteger(dimensions) || dimensions <= 0) throw new AppError(Code.FailedPrecondition, `the embedding model ${spec.model} did not tell its vector size`, { reason: 'embedding_invalid' });
    const space = await this.deps.spaces.create({ id: newSpaceId(), personaId, ownerId, provider: spec.provider, model: spec.model, baseUrl: spec.baseUrl, dimensions, state });
    if (space) {
      this.embedders.set(space.id, { embedder, apiKey });
      this.deps.logger.info('embedding space created', { persona_id: personaId, space_id: space.id, model: spec.model, dimensions, state });
    }
    return { space, embedder };
  }

  /** ensureActive returns the persona's active space, creating it from the profile when there is none. */
  async ensureActive(ownerId: string, personaId: string): Promise<EmbeddingSpace> {
    const active = await this.deps.spaces.active(personaId);
    if (active) return active;
    let p = this.creating.get(personaId);
    if (!p) {
      p = (async () => {
        const { space } = await this.newSpace(ownerId, personaId, 'active');
        // Another replica created one first: use that one.
        const current = space ?? (await this.deps.spaces.active(personaId));
        if (!current) throw new AppError(Code.Aborted, 'the knowledge space of this persona changed concurrently; try again', { reason: 'space_conflict' });
        return current;
      })().finally(() => this.creating.delete(personaId));
      this.creating.set(personaId, p);
    }
    return p;
  }

  async embedderFor(ownerId: string, personaId: string): Promise<Embedder> {
    const space = await this.ensureActive(ownerId, personaId);
    return this.embedderOf(space, ownerId);
  }

  async upsert(chunks: readonly StoredChunk[]): Promise<void> {
    const byPersona = new Map<string, StoredChunk[]>();
    for (const c of chunks) {
      const list = byPersona.get(c.personaId) ?? [];
      list.push(c);
      byPersona.set(c.personaId, list);
    }
    for (const [personaId, list] of byPersona) {
      const space = await this.deps.spaces.active(personaId);
      if (!space) throw new Error(`persona ${personaId} has no active embedding space (ask embedderFor first)`);
      await this.deps.store.upsert(space, list);
    }
  }

  deleteBySource(sourceId: string): Promise<void> {
    return this.deps.store.deleteBySource(sourceId);
  }

  /** deleteByPersona removes a persona's vectors in every space, then the spaces. */
  async deleteByPersona(personaId: string): Promise<void> {
    await this.deps.store.deleteByPersona(personaId);
    await this.deps.spaces.deleteByPersona(personaId);
    for (const [id] of this.embedders) this.embedders.delete(id);
  }
}
