/**
 * KnownPersonas remembers, for a while, that a persona exists and belongs to an owner, so that
 * creating a session (every OpenAI-compatible completion does) need not ask the persona service each
 * time. A persona never changes owner; only its deletion makes an entry wrong, and every session
 * replica hears of it (`forget`, from its own live subscription to persona events). The TTL bounds
 * what a lost event costs. A lookup that started before a deletion is not remembered.
 */
export class KnownPersonas {
  private readonly entries = new Map<string, { id: string; expiresAt: number }>();
  private generation = 0;

  constructor(
    private readonly ttlMs: number,
    private readonly max = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  private key(ownerId: string, personaId: string): string {
    return `${ownerId}/${personaId.toLowerCase()}`;
  }

  /** idOf is the persona's id as the persona service spells it, when known to be the owner's; else undefined. */
  idOf(ownerId: string, personaId: string): string | undefined {
    const key = this.key(ownerId, personaId);
    const hit = this.entries.get(key);
    if (!hit) return undefined;
    if (hit.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return hit.id;
  }

  /** lookup asks `read` (the persona service) unless the persona is known; it rejects as `read` does. */
  async lookup(ownerId: string, personaId: string, read: () => Promise<string>): Promise<string> {
    const known = this.idOf(ownerId, personaId);
    if (known !== undefined) return known;
    const generation = this.generation;
    const id = await read();
    if (this.ttlMs > 0 && generation === this.generation) {
      const key = this.key(ownerId, personaId);
      this.entries.delete(key);
      this.entries.set(key, { id, expiresAt: this.now() + this.ttlMs });
      while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    }
    return id;
  }

  /** forget drops a deleted persona (every owner's entry of that id). */
  forget(personaId: string): void {
    this.generation++;
    const id = personaId.toLowerCase();
    for (const [key, e] of this.entries) if (e.id.toLowerCase() === id || key.endsWith(`/${id}`)) this.entries.delete(key);
  }
}
