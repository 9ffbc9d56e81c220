import { AppError } from '@chat/errors';

/** Role is who wrote a message. */
export type Role = 'user' | 'assistant';
/** MessageStatus is the lifecycle of a message. */
export type MessageStatus = 'pending' | 'streaming' | 'completed' | 'failed' | 'cancelled';

/** Citation points from an assistant message to a knowledge chunk. */
export interface Citation {
  source_id: string;
  title: string;
  url: string;
  chunk_id: string;
  score: number;
}

/** Session is one conversation. */
export interface Session {
  id: string;
  ownerId: string;
  personaId: string;
  title: string;
  lastSeq: number;
  createdAt: Date;
}

/** Message is one turn. */
export interface Message {
  id: string;
  sessionId: string;
  role: Role;
  content: string;
  status: MessageStatus;
  replyId: string | null;
  replyTo: string | null;
  citations: Citation[];
  model: string;
  error: string;
  createdAt: Date;
  /** Orders messages; a summary covers every message up to a position. */
  position: number;
}

/** Summary is a session's rolling summary of its messages up to coveredUntil (a position). */
export interface Summary {
  text: string;
  coveredUntil: number;
  version: number;
  updatedAt: Date | undefined;
}

/** FINAL_STATUSES are the statuses a reply never leaves. */
export const FINAL_STATUSES: ReadonlySet<MessageStatus> = new Set(['completed', 'failed', 'cancelled']);

/** PageCursor is where a newest-first listing of sessions continues. */
export interface PageCursor {
  /** created_at as UTC text with microseconds (JS dates lose them). */
  createdAt: string;
  id: string;
}

/** encodeCursor makes an opaque page token. */
export function encodeCursor(c: PageCursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.id]), 'utf8').toString('base64url');
}

/** decodeCursor reads a page token; anything malformed is a client error. */
export function decodeCursor(token: string): PageCursor {
  try {
    const v: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,6})?$/.test(v[0]) && typeof v[1] === 'string' && isUuid(v[1])) {
      return { createdAt: v[0], id: v[1] };
    }
  } catch {
    // falls through
  }
  throw AppError.invalid('page_token is not valid', { page_token: 'must be a next_page_token this API returned' });
}

/** Limits on session input. */
export const SESSION_LIMITS = { title: 500, content: 32_000, idempotencyKey: 200, priority: 10 } as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** isUuid tells whether an id has the shape of the ids this service issues. */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}

/** PostgreSQL text cannot hold NUL: refused up front as a client error, not left to fail as an internal one. */
export const NO_NUL = 'must not contain NUL (\\u0000) characters';

/** validateSend checks a user message before it is stored. */
export function validateSend(input: { ownerId: string; content: string; priority: number; idempotencyKey: string }): void {
  const fields: Record<string, string> = {};
  if (!input.ownerId) fields.owner_id = 'is required';
  if (!input.content.trim()) fields.content = 'must not be empty';
  else if (input.content.length > SESSION_LIMITS.content) fields.content = `must be at most ${SESSION_LIMITS.content} characters`;
  else if (input.content.includes('\u0000')) fields.content = NO_NUL;
  if (!Number.isInteger(input.priority) || Math.abs(input.priority) > SESSION_LIMITS.priority) fields.priority = `must be a whole number from -${SESSION_LIMITS.priority} to ${SESSION_LIMITS.priority}`;
  if (input.idempotencyKey.length > SESSION_LIMITS.idempotencyKey) fields.idempotency_key = `must be at most ${SESSION_LIMITS.idempotencyKey} characters`;
  if (Object.keys(fields).length) throw AppError.invalid('the message is not valid', fields);
}

/** validateCreate checks a new session. */
export function validateCreate(input: { ownerId: string; personaId: string; title: string }): void {
  const fields: Record<string, string> = {};
  if (!input.ownerId) fields.owner_id = 'is required';
  if (!input.personaId) fields.persona_id = 'is required';
  if (input.title.length > SESSION_LIMITS.title) fields.title = `must be at most ${SESSION_LIMITS.title} characters`;
  else if (input.title.includes('\u0000')) fields.title = NO_NUL;
  if (Object.keys(fields).length) throw AppError.invalid('the session is not valid', fields);
}
