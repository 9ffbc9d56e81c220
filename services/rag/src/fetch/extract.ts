import { Readability } from '@mozilla/readability';
import { parseHTML } from 'linkedom';
import { extractText, getDocumentProxy, getMeta } from 'unpdf';
import { looksBinary } from '../domain/validate.js';
import type { FetchedResource } from './safe-fetch.js';

/** ExtractError is a document whose text could not be read (binary, broken PDF, no text). */
export class ExtractError extends Error {
  override readonly name = 'ExtractError';
}

/** ExtractedDocument is the readable text of a fetched document and its title. */
export interface ExtractedDocument {
  title: string;
  text: string;
  format: 'html' | 'pdf' | 'text';
}

const HTML_TYPES = new Set(['text/html', 'application/xhtml+xml']);

/**
 * extractDocument turns a fetched body into text: HTML through Mozilla's Readability (the main
 * article, without navigation and boilerplate; the whole body when Readability finds no article),
 * PDF through unpdf (PDF.js), text and Markdown as they are. A body without a Content-Type is
 * sniffed. Binary content and documents without text are refused with an ExtractError.
 */
export async function extractDocument(res: Pick<FetchedResource, 'body' | 'contentType' | 'charset' | 'url'>): Promise<ExtractedDocument> {
  const type = res.contentType || sniff(res.body);
  let doc: ExtractedDocument;
  if (type === 'application/pdf') doc = await extractPdf(res.body);
  else if (HTML_TYPES.has(type)) doc = extractHtml(decode(res.body, res.charset || htmlCharset(res.body)));
  else {
    const text = decode(res.body, res.charset);
    doc = { title: '', text, format: 'text' };
  }
  if (looksBinary(doc.text)) throw new ExtractError('the content looks binary, not text');
  const text = normalizeText(doc.text);
  if (!text) throw new ExtractError(`the ${doc.format === 'pdf' ? 'PDF' : doc.format === 'html' ? 'page' : 'document'} has no text to index`);
  return { ...doc, title: doc.title.replace(/\s+/g, ' ').trim(), text };
}

function sniff(body: Buffer): string {
  const head = body.subarray(0, 1024).toString('latin1').trimStart().toLowerCase();
  if (head.startsWith('%pdf-')) return 'application/pdf';
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || /<(head|body|title)[\s>]/.test(head)) return 'text/html';
  return 'text/plain';
}

function htmlCharset(body: Buffer): string {
  const head = body.subarray(0, 2048).toString('latin1');
  return /<meta[^>]+charset\s*=\s*["']?([\w-]+)/i.exec(head)?.[1]?.toLowerCase() ?? '';
}

function decode(body: Buffer, charset: string): string {
  try {
    return new TextDecoder(charset || 'utf-8').decode(body);
  } catch {
    // An unknown charset label: read it as UTF-8 (undecodable bytes show as U+FFFD).
    return new TextDecoder('utf-8').decode(body);
  }
}

/** normalizeText collapses runs of spaces and blank lines, and trims. */
export function normalizeText(text: string): string {
  return text
    .replace(/\r\n?/g, '\n')
    .replace(/[ \t\f\v\u00a0]+/g, ' ')
    .replace(/ *\n */g, '\n')
    .replace(/\n{3,}/g, '\n\n')
    .trim();
}

const SKIP = new Set(['script', 'style', 'noscript', 'template', 'svg', 'canvas', 'iframe', 'object', 'head']);
const BLOCK = new Set([
  'address', 'article', 'aside', 'blockquote', 'dd', 'details', 'div', 'dl', 'dt', 'fieldset', 'figcaption', 'figure', 'footer', 'form',
  'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'header', 'hr', 'li', 'main', 'nav', 'ol', 'p', 'pre', 'section', 'summary', 'table', 'tr', 'ul',
]);
const BOILERPLATE = new Set(['nav', 'header', 'footer', 'aside', 'form']);

interface DomNode {
  nodeType: number;
  nodeName: string;
  nodeValue: string | null;
  childNodes: ArrayLike<DomNode>;
}

/** textOf writes a DOM subtree as text with paragraph breaks between blocks (Readability's textContent runs them together). */
function textOf(root: DomNode, skipBoilerplate: boolean): string {
  const out: string[] = [];
  const walk = (node: DomNode, pre: boolean) => {
    if (node.nodeType === 3) {
      const v = node.nodeValue ?? '';
      out.push(pre ? v : v.replace(/\s+/g, ' '));
      return;
    }
    if (node.nodeType !== 1 && node.nodeType !== 9 && node.nodeType !== 11) return;
    const name = node.nodeName.toLowerCase();
    if (SKIP.has(name) || (skipBoilerplate && BOILERPLATE.has(name))) return;
    if (name === 'br') {
      out.push('\n');
      return;
    }
    const block = BLOCK.has(name);
    if (block) out.push('\n\n');
    if (name === 'li') out.push('- ');
    if (name === 'td' || name === 'th') out.push(' ');
    for (let i = 0; i < node.childNodes.length; i++) walk(node.childNodes[i]!, pre || name === 'pre');
    if (block) out.push('\n\n');
  };
  walk(root, false);
  return out.join('');
}

interface ParsedDocument extends DomNode {
  title?: string;
  body?: DomNode | null;
}

function parse(html: string): ParsedDocument {
  return (parseHTML(html) as unknown as { document: ParsedDocument }).document;
}

function extractHtml(html: string): ExtractedDocument {
  const document = parse(html);
  const pageTitle = (document.title ?? '').trim();
  // Readability changes the document it reads: keep the fallback's own copy.
  const fallback = parse(html);
  let article: { title?: string | null; content?: string | null } | null = null;
  try {
    article = new Readability(document as never, { charThreshold: 200 }).parse();
  } catch {
    article = null;
  }
  if (article?.content) {
    const text = textOf(parse(`<!doctype html><html><body>${article.content}</body></html>`), false);
    if (normalizeText(text)) return { title: article.title?.trim() || pageTitle, text, format: 'html' };
  }
  const body = fallback.body ?? fallback;
  return { title: pageTitle, text: textOf(body, true), format: 'html' };
}

async function extractPdf(body: Buffer): Promise<ExtractedDocument> {
  let pdf: Awaited<ReturnType<typeof getDocumentProxy>>;
  try {
    pdf = await getDocumentProxy(new Uint8Array(body), { verbosity: 0 });
  } catch (err) {
    throw new ExtractError(`the PDF could not be read: ${err instanceof Error ? err.message : String(err)}`);
  }
  try {
    const { text } = await extractText(pdf, { mergePages: false });
    let title = '';
    try {
      const meta = await getMeta(pdf);
      const info = meta.info as Record<string, unknown> | undefined;
      title = typeof info?.Title === 'string' ? info.Title : '';
    } catch {
      title = '';
    }
    return { title, text: (text as string[]).join('\n\n'), format: 'pdf' };
  } catch (err) {
    throw new ExtractError(`the PDF text could not be extracted: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    await pdf.destroy().catch(() => undefined);
  }
}
