import type { SourceRepository, SpaceRepository } from './ports.js';
import type { EmbeddingSpace } from './types.js';

/** KnowledgeState is what retrieval reads about a persona before it searches. */
export interface KnowledgeState {
  /** The distinct owners of the persona's sources (empty: no sources). */
  owners: string[];
  /** The active embedding space; undefined: the persona has no knowledge. */
  space: EmbeddingSpace | undefined;
}

/** A state as a reader got it: `cached` says it came from the cache (it may lag a change by the notification latency). */
export type ReadState = KnowledgeState & { cached: boolean };

/** KnowledgeStateReader is what retrieval asks (the cache, or the repositories directly). */
export interface KnowledgeStateReader {
  get(personaId: string): Promise<ReadState>;
  /**
   * revalidate reads the state again from the database, bypassing the cache, after a search in a
   * cached space found nothing (or failed): the space may have been switched or dropped by a change
   * whose notification has not arrived yet. When the fresh state still names `spaceId`, the entry is
   * marked confirmed, so the same empty result does not read again until the next change.
   */
  revalidate(personaId: string, spaceId: string): Promise<KnowledgeState>;
  /** confirmed says whether an empty search of this cached space was already checked against the database (since the last change). */
  confirmed?(personaId: string, spaceId: string): boolean;
}

/** KnowledgeStateOptions configure the cache. */
export interface KnowledgeStateOptions {
  /** Safety net: an entry is read again after this long even without a notification. 0 disables the cache. */
  ttlMs: number;
  /** Most personas kept (the oldest entry goes first). */
  maxEntries?: number;
  now?: () => number;
}

interface Entry extends KnowledgeState {
  expiresAt: number;
  /** A search of this space found nothing and a fresh read confirmed the space: an empty search needs no re-read. */
  confirmed: boolean;
}

interface Load {
  promise: Promise<KnowledgeState>;
  /** An invalidation came while it ran: its answer is used by its callers but not cached. */
  stale: boolean;
}

/**
 * KnowledgeStateCache keeps, per persona, the owners of its sources and its active embedding space
 * (or that it has none), so a reply does not read them from PostgreSQL. Entries are dropped when the
 * persona's sources or spaces change: synchronously after this process's own writes (the
 * repositories' onChange), and by the database's change notifications for every other replica's
 * writes (PgKnowledgeListener; docs/decisions/0022). While notifications cannot be received (the
 * listening connection is down) the cache is disabled: every read goes to the database. A read
 * that an invalidation overtakes is used but not cached; concurrent misses of one persona share one
 * read. A TTL bounds staleness should a notification ever be missed unnoticed.
 */
export class KnowledgeStateCache implements KnowledgeStateReader {
  private readonly entries = new Map<string, Entry>();
  private readonly loads = new Map<string, Load>();
  private readonly now: () => number;
  private readonly maxEntries: number;
  private live = false;
  private counters = { hits: 0, misses: 0, invalidations: 0 };

  constructor(
    private readonly deps: { sources: Pick<SourceRepository, 'ownersOfPersona'>; spaces: Pick<SpaceRepository, 'active'> },
    private readonly options: KnowledgeStateOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.maxEntries = options.maxEntries ?? 10_000;
  }

  /**
   * setLive turns caching on (change notifications are being received) or off (they are not: the
   * listener is down or not yet listening). Both drop every entry: changes made while notifications
   * were not received are unknown.
   */
  setLive(live: boolean): void {
    this.live = live && this.options.ttlMs > 0;
    this.clear();
  }

  /** enabled says whether reads are cached now. */
  get enabled(): boolean {
    return this.live;
  }

  async get(personaId: string): Promise<ReadState> {
    if (this.live) {
      const hit = this.entries.get(personaId);
      if (hit && hit.expiresAt > this.now()) {
        this.counters.hits++;
        return { owners: hit.owners, space: hit.space, cached: true };
      }
    }
    this.counters.misses++;
    return { ...(await this.load(personaId)), cached: false };
  }

  async revalidate(personaId: string, spaceId: string): Promise<KnowledgeState> {
    this.invalidate(personaId);
    const state = await this.load(personaId);
    const entry = this.entries.get(personaId);
    if (entry && entry.space?.id === spaceId) entry.confirmed = true;
    return state;
  }

  confirmed(personaId: string, spaceId: string): boolean {
    const entry = this.entries.get(personaId);
    return !!entry && entry.confirmed && entry.space?.id === spaceId;
  }

  /** invalidate drops a persona's entry and keeps reads in flight from caching what they read. */
  invalidate(personaId: string): void {
    this.counters.invalidations++;
    this.entries.delete(personaId);
    const load = this.loads.get(personaId);
    if (load) {
      load.stale = true;
      this.loads.delete(personaId);
    }
  }

  /** clear drops every entry (and keeps reads in flight from caching). */
  clear(): void {
    this.entries.clear();
    for (const load of this.loads.values()) load.stale = true;
    this.loads.clear();
  }

  /** stats reports the cache's size and counters (tests and diagnostics). */
  get stats(): { entries: number; hits: number; misses: number; invalidations: number; live: boolean } {
    return { entries: this.entries.size, ...this.counters, live: this.live };
  }

  private load(personaId: string): Promise<KnowledgeState> {
    const running = this.loads.get(personaId);
    if (running) return running.promise;
    const load: Load = {
      stale: false,
      promise: Promise.all([this.deps.sources.ownersOfPersona(personaId), this.deps.spaces.active(personaId)]).then(([owners, space]) => {
        if (this.loads.get(personaId) === load) this.loads.delete(personaId);
        if (!load.stale && this.live) this.put(personaId, { owners, space });
        return { owners, space };
      }),
    };
    load.promise.catch(() => {
      if (this.loads.get(personaId) === load) this.loads.delete(personaId);
    });
    this.loads.set(personaId, load);
    return load.promise;
  }

  private put(personaId: string, state: KnowledgeState): void {
    this.entries.delete(personaId);
    if (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(personaId, { ...state, confirmed: false, expiresAt: this.now() + this.options.ttlMs });
  }
}

/** uncachedKnowledgeState reads the state from the repositories on every call (no cache). */
export function uncachedKnowledgeState(deps: { sources: Pick<SourceRepository, 'ownersOfPersona'>; spaces: Pick<SpaceRepository, 'active'> }): KnowledgeStateReader {
  const read = async (personaId: string): Promise<KnowledgeState> => {
    const [owners, space] = await Promise.all([deps.sources.ownersOfPersona(personaId), deps.spaces.active(personaId)]);
    return { owners, space };
  };
  return {
    get: async (personaId) => ({ ...(await read(personaId)), cached: false }),
    revalidate: (personaId) => read(personaId),
  };
}
