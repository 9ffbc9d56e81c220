/** The label every development-model reply starts with. */
export const DEV_LABEL = '[development model] ';

/** A chat message as the OpenAI protocol sends it (content may be a string or a list of parts). */
export interface WireMessage {
  role: string;
  content?: unknown;
}

/** messageText flattens a message's content (string or `[{type:'text', text}]` parts) to text. */
export function messageText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p: unknown) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : ''))
      .filter(Boolean)
      .join('\n');
  }
  return '';
}

/** A knowledge passage quoted in the system prompt by the RAG service. */
export interface QuotedPassage {
  title: string;
  text: string;
}

const PASSAGE = /<<<passage (\d+)(?: \| title: ([^\n]*?))?>>>\n?([\s\S]*?)\n?<<<end passage \1>>>/g;

/** extractPassages finds `<<<passage N | title: ...>>> ... <<<end passage N>>>` blocks in text. */
export function extractPassages(text: string): QuotedPassage[] {
  const out: QuotedPassage[] = [];
  for (const m of text.matchAll(PASSAGE)) {
    const body = (m[3] ?? '').trim();
    if (body) out.push({ title: (m[2] ?? '').trim(), text: body });
  }
  return out;
}

const STOP_WORDS = new Set(
  'a an and are as at be but by can do does did for from has have how i in is it its me my of on or our so that the their them they this to was we what when where which who why will with you your about tell know'.split(
    ' ',
  ),
);

/** words are the lower-cased content words of a text. */
function words(text: string): string[] {
  return (text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []).filter((w) => !STOP_WORDS.has(w));
}

/** sentences splits a passage into sentences (and lines). */
export function sentences(text: string): string[] {
  return text
    .split(/(?<=[.!?])\s+|\n+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

/**
 * devReply is the development model's deterministic answer: the knowledge sentence(s) that share
 * the most words with the question, or a plain statement that it knows nothing yet.
 */
export function devReply(messages: readonly WireMessage[]): string {
  const system = messages
    .filter((m) => m.role === 'system' || m.role === 'developer')
    .map((m) => messageText(m.content))
    .join('\n');
  const lastUser = [...messages].reverse().find((m) => m.role === 'user');
  const question = lastUser ? messageText(lastUser.content).trim() : '';
  const passages = extractPassages(system);
  if (passages.length === 0) return `${DEV_LABEL}I have no knowledge about that yet. You asked: ${question}`;

  const asked = new Set(words(question));
  const scored: Array<{ sentence: string; score: number; order: number }> = [];
  let order = 0;
  for (const p of passages) {
    for (const s of sentences(p.text)) {
      const ws = new Set(words(s));
      let score = 0;
      for (const w of ws) if (asked.has(w)) score++;
      scored.push({ sentence: s, score, order: order++ });
    }
  }
  const best = Math.max(...scored.map((s) => s.score));
  let picked: typeof scored;
  if (best <= 0) {
    // Nothing overlaps: the passages came ranked, so the first sentence is the best guess.
    picked = scored.slice(0, 1);
  } else {
    // The best sentence, plus the runner-up when it is nearly as good; kept in reading order.
    const ranked = [...scored].sort((a, b) => b.score - a.score || a.order - b.order);
    picked = ranked.slice(0, 2).filter((s, i) => i === 0 || s.score >= Math.max(1, best - 1));
    picked.sort((a, b) => a.order - b.order);
  }
  return `${DEV_LABEL}From what I know: ${picked.map((s) => s.sentence).join(' ')}`;
}

/** splitForStream cuts a reply into chunks of a few words each, keeping the whitespace. */
export function splitForStream(text: string, wordsPerChunk = 3): string[] {
  const tokens = text.match(/\S+\s*/g) ?? [];
  const leading = text.match(/^\s*/)?.[0] ?? '';
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i += wordsPerChunk) out.push(tokens.slice(i, i + wordsPerChunk).join(''));
  if (leading && out.length) out[0] = leading + out[0];
  return out.length ? out : [text];
}
