import { countTokens, decode, encode } from 'gpt-tokenizer';
import type { Tokenizer } from '../domain/window.js';

/**
 * gptTokenizer counts with the o200k_base encoding of gpt-tokenizer (bundled with the package, no
 * download at run time). Other models' tokenizers differ by a few percent; the budget is a bound
 * for the prompt, not an exact fit.
 */
export const gptTokenizer: Tokenizer = {
  count: (text) => (text ? cachedCount(text) : 0),
  truncate: (text, maxTokens) => {
    if (maxTokens <= 0) return '';
    const tokens = encode(text);
    return tokens.length <= maxTokens ? text : decode(tokens.slice(0, maxTokens));
  },
};

/**
 * Counts of recently counted texts: the window is rebuilt on every turn from mostly the same
 * messages (and the same system prompt), so most counts repeat. Bounded; cleared when full.
 */
const counts = new Map<string, number>();
const MAX_CACHED = 2_000;
/** Longer texts are counted each time (keeps the cache bounded: at most 2,000 texts of 8 Ki characters). */
const MAX_CACHED_CHARS = 8 * 1024;

function cachedCount(text: string): number {
  if (text.length > MAX_CACHED_CHARS) return countTokens(text);
  const hit = counts.get(text);
  if (hit !== undefined) return hit;
  const n = countTokens(text);
  if (counts.size >= MAX_CACHED) counts.clear();
  counts.set(text, n);
  return n;
}
