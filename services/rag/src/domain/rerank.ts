import { tokens } from './hash-embedder.js';
import type { Reranker } from './ports.js';

/** Common English function words: they say little about relevance. */
const STOPWORDS = new Set(
  'a an and are as at be but by can could did do does for from had has have how i if in into is it its of on or she he they that the their them then there these this those to was we were what when where which who whom whose why will with would you your'.split(
    ' ',
  ),
);

/** stem is a crude, language-neutral stem: the first five characters of a word (enough to match plural and tense variants). */
function stem(word: string): string {
  return word.length > 5 ? word.slice(0, 5) : word;
}

function terms(text: string): string[] {
  return tokens(text)
    .filter((w) => !STOPWORDS.has(w))
    .map(stem);
}

/**
 * LocalOverlapReranker is the built-in reranker: a deterministic heuristic, not a trained model
 * (its name says so). It scores a candidate by how much of the query it covers: the share of the
 * query's distinct content words it contains (0.6), the share of the query's adjacent word pairs it
 * contains in order (0.25) and how densely the matched words occur in it (0.15). It runs
 * in-process in microseconds. For a learned cross-encoder, point RAG_RERANK_URL at a /rerank
 * endpoint.
 */
export class LocalOverlapReranker implements Reranker {
  readonly name = 'local-overlap-v1';
  readonly local = true;

  async score(query: string, texts: readonly string[]): Promise<number[]> {
    const q = terms(query);
    const qSet = new Set(q);
    const qPairs = new Set<string>();
    for (let i = 0; i + 1 < q.length; i++) qPairs.add(`${q[i]} ${q[i + 1]}`);
    if (qSet.size === 0) return texts.map(() => 0);
    return texts.map((text) => {
      const t = terms(text);
      if (t.length === 0) return 0;
      const tSet = new Set(t);
      let covered = 0;
      for (const w of qSet) if (tSet.has(w)) covered++;
      let pairs = 0;
      if (qPairs.size > 0) {
        const tPairs = new Set<string>();
        for (let i = 0; i + 1 < t.length; i++) tPairs.add(`${t[i]} ${t[i + 1]}`);
        for (const p of qPairs) if (tPairs.has(p)) pairs++;
      }
      let hits = 0;
      for (const w of t) if (qSet.has(w)) hits++;
      const coverage = covered / qSet.size;
      const pairCoverage = qPairs.size > 0 ? pairs / qPairs.size : coverage;
      // Density saturates: a passage that is 20 % query words is as dense as it gets.
      const density = Math.min(1, hits / t.length / 0.2);
      return 0.6 * coverage + 0.25 * pairCoverage + 0.15 * density;
    });
  }
}
