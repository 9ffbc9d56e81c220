import { createHash } from 'node:crypto';
import { AppError } from '@chat/errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Ids of other services: UUIDs or similar tokens; nothing that could change a filter expression. */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$/;

/** isUuid says whether s is a UUID in canonical text form. */
export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/** requireId checks an id given by a caller: present, and a safe token. */
export function requireId(field: string, value: string): string {
  const v = value.trim();
  if (!v) throw AppError.invalid(`${field} is required`, { [field]: 'is required' });
  if (!SAFE_ID.test(v)) throw AppError.invalid(`${field} is not a valid id`, { [field]: 'must be an id of letters, digits and . _ : @ - (at most 128)' });
  return v;
}

/** sha256 is the hex content hash of a text. */
export function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** stableUuid derives a UUID-shaped id from a name, the same for the same name. */
export function stableUuid(name: string): string {
  const h = createHash('sha256').update(name).digest('hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** looksBinary says whether a text is binary content: NUL characters, or more than a tenth control characters or undecodable bytes. */
export function looksBinary(text: string): boolean {
  if (text.includes('\u0000')) return true;
  const sample = text.slice(0, 65_536);
  if (sample.length === 0) return false;
  let bad = 0;
  for (let i = 0; i < sample.length; i++) {
    const c = sample.charCodeAt(i);
    if ((c < 32 && c !== 9 && c !== 10 && c !== 12 && c !== 13) || c === 0xfffd || (c >= 0x7f && c < 0xa0)) bad++;
  }
  return bad / sample.length > 0.1;
}
