/** ChunkOptions tune the splitter. */
export interface ChunkOptions {
  /** Largest chunk, in characters. */
  chunkSize?: number;
  /** Characters that neighbouring chunks share, so a fact cut at a boundary survives in one of them. */
  chunkOverlap?: number;
}

/** TextChunk is one piece of a source, with the source's title. */
export interface TextChunk {
  index: number;
  title: string;
  text: string;
}

/** Separators from coarse to fine: paragraphs, lines, sentences, words, characters. */
const SEPARATORS: Array<{ split: RegExp | string; join: string }> = [
  { split: /\n\s*\n/, join: '\n\n' },
  { split: '\n', join: '\n' },
  { split: /(?<=[.!?])\s+/, join: ' ' },
  { split: ' ', join: ' ' },
  { split: '', join: '' },
];

function contains(text: string, sep: RegExp | string): boolean {
  return typeof sep === 'string' ? sep === '' || text.includes(sep) : sep.test(text);
}

/**
 * splitText is a recursive character splitter: it cuts at the coarsest separator present, keeps
 * pieces that fit, and cuts oversized pieces again with the next finer separator; then it merges
 * neighbouring pieces into chunks of up to chunkSize characters that overlap by about chunkOverlap.
 */
export function splitText(text: string, options: ChunkOptions = {}): string[] {
  const chunkSize = options.chunkSize ?? 800;
  const overlap = options.chunkOverlap ?? 100;
  if (chunkSize < 1) throw new Error('chunkSize must be at least 1');
  if (overlap < 0 || overlap >= chunkSize) throw new Error('chunkOverlap must be at least 0 and below chunkSize');

  const merge = (pieces: string[], join: string): string[] => {
    const out: string[] = [];
    let current: string[] = [];
    let total = 0;
    const len = (parts: string[]) => parts.reduce((n, p) => n + p.length, 0) + join.length * Math.max(0, parts.length - 1);
    for (const piece of pieces) {
      const added = piece.length + (current.length > 0 ? join.length : 0);
      if (total + added > chunkSize && current.length > 0) {
        const doc = current.join(join).trim();
        if (doc) out.push(doc);
        // Drop pieces from the front until what is left fits in the overlap and leaves room for the new piece.
        while (current.length > 0 && (total > overlap || (total + piece.length + join.length > chunkSize && total > 0))) {
          current.shift();
          total = len(current);
        }
      }
      current.push(piece);
      total = len(current);
    }
    const doc = current.join(join).trim();
    if (doc) out.push(doc);
    return out;
  };

  const recurse = (input: string, level: number): string[] => {
    let i = level;
    while (i < SEPARATORS.length - 1 && !contains(input, SEPARATORS[i]!.split)) i++;
    const { split, join } = SEPARATORS[i]!;
    const pieces = (split === '' ? [...input] : input.split(split)).map((p) => (split === '' ? p : p.trim())).filter((p) => p.length > 0);
    const out: string[] = [];
    let fitting: string[] = [];
    for (const piece of pieces) {
      if (piece.length <= chunkSize) {
        fitting.push(piece);
        continue;
      }
      if (fitting.length) out.push(...merge(fitting, join));
      fitting = [];
      if (i >= SEPARATORS.length - 1) out.push(piece);
      else out.push(...recurse(piece, i + 1));
    }
    if (fitting.length) out.push(...merge(fitting, join));
    return out;
  };

  const clean = text.replace(/\r\n?/g, '\n').trim();
  if (!clean) return [];
  return recurse(clean, 0);
}

/** chunkText splits a source's text into chunks that each keep the source title. */
export function chunkText(text: string, title: string, options: ChunkOptions = {}): TextChunk[] {
  return splitText(text, options).map((t, index) => ({ index, title, text: t }));
}
