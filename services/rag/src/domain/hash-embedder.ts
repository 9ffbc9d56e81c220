import type { Embedder } from './ports.js';

/** FNV-1a, 32 bit. */
function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** tokens are the lower-cased words of a text (letters and digits of any script). */
export function tokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/**
 * hashEmbed is feature hashing of word unigrams and bigrams into `dimensions` buckets, with a
 * hashed sign to cancel collisions on average, and sub-linear term weights; L2-normalised.
 * The same text always gives the same vector. An empty text gives the zero vector.
 */
export function hashEmbed(text: string, dimensions = 384): number[] {
  const counts = new Map<string, number>();
  const words = tokens(text);
  const add = (feature: string, weight: number) => counts.set(feature, (counts.get(feature) ?? 0) + weight);
  for (let i = 0; i < words.length; i++) {
    add(`u:${words[i]}`, 1);
    if (i + 1 < words.length) add(`b:${words[i]} ${words[i + 1]}`, 0.5);
  }
  const v = new Array<number>(dimensions).fill(0);
  for (const [feature, count] of counts) {
    const h = fnv1a(feature);
    const sign = fnv1a(feature, 0x01000193) & 1 ? 1 : -1;
    v[h % dimensions]! += sign * (1 + Math.log(count));
  }
  let norm = 0;
  for (const x of v) norm += x * x;
  norm = Math.sqrt(norm);
  return norm > 0 ? v.map((x) => x / norm) : v;
}

/** LocalHashEmbedder is the built-in embedder: deterministic, in-process, no model needed. */
export class LocalHashEmbedder implements Embedder {
  readonly name = 'local-hash-384';
  readonly dimensions = 384;
  readonly local = true;

  async embed(texts: readonly string[]): Promise<number[][]> {
    return texts.map((t) => hashEmbed(t, this.dimensions));
  }
}
