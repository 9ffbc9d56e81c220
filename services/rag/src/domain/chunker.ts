import { RecursiveCharacterTextSplitter } from '@langchain/textsplitters';

/** ChunkOptions tune the splitter (RAG_CHUNK_SIZE, RAG_CHUNK_OVERLAP). */
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

/** The default chunk size and overlap, in characters. */
export const DEFAULT_CHUNK_SIZE = 800;
export const DEFAULT_CHUNK_OVERLAP = 100;

/**
 * Separators from coarse to fine: paragraphs, lines, sentence ends (Latin and CJK), words, then
 * characters. The splitter keeps each separator at the start of the piece that follows it.
 */
const SEPARATORS = ['\n\n', '\n', '. ', '! ', '? ', '。', '！', '？', '; ', ', ', ' ', ''];

function splitter(options: ChunkOptions): RecursiveCharacterTextSplitter {
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const chunkOverlap = options.chunkOverlap ?? DEFAULT_CHUNK_OVERLAP;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new Error('chunkSize must be a whole number of at least 1');
  if (!Number.isInteger(chunkOverlap) || chunkOverlap < 0 || chunkOverlap >= chunkSize) throw new Error('chunkOverlap must be at least 0 and below chunkSize');
  return new RecursiveCharacterTextSplitter({ chunkSize, chunkOverlap, separators: SEPARATORS, keepSeparator: true });
}

/** tidy drops the separator a piece starts with when it is only punctuation left from a sentence cut. */
function tidy(piece: string): string {
  return piece.replace(/^[.!?;,。！？]\s*/, '').trim();
}

/**
 * splitText cuts text into chunks of at most chunkSize characters that overlap by about
 * chunkOverlap, with LangChain's RecursiveCharacterTextSplitter: it cuts at the coarsest
 * separator present (paragraphs, then lines, sentences, words, characters) and merges neighbouring
 * pieces back up to the chunk size.
 */
export async function splitText(text: string, options: ChunkOptions = {}): Promise<string[]> {
  const s = splitter(options);
  const clean = text.replace(/\r\n?/g, '\n').trim();
  if (!clean) return [];
  const pieces = await s.splitText(clean);
  return pieces.map(tidy).filter((p) => p.length > 0);
}

/** chunkText splits a source's text into chunks that each keep the source title. */
export async function chunkText(text: string, title: string, options: ChunkOptions = {}): Promise<TextChunk[]> {
  return (await splitText(text, options)).map((t, index) => ({ index, title, text: t }));
}

/** embeddingInput is what gets embedded for a chunk: the source title above the chunk text, so a chunk is found by its document's subject too. */
export function embeddingInput(chunk: Pick<TextChunk, 'title' | 'text'>): string {
  return chunk.title ? `${chunk.title}\n${chunk.text}` : chunk.text;
}
