import { countTokens, decode, encode } from 'gpt-tokenizer';
import type { Tokenizer } from '../domain/window.js';

/**
 * gptTokenizer counts with the o200k_base encoding of gpt-tokenizer (bundled with the package, no
 * download at run time). Other models' tokenizers differ by a few percent; the budget is a bound
 * for the prompt, not an exact fit.
 */
export const gptTokenizer: Tokenizer = {
  count: (text) => (text ? countTokens(text) : 0),
  truncate: (text, maxTokens) => {
    if (maxTokens <= 0) return '';
    const tokens = encode(text);
    return tokens.length <= maxTokens ? text : decode(tokens.slice(0, maxTokens));
  },
};
