import { eventsV1 } from '@chat/contracts';
import { citationToJson } from '../json.js';

/** A server → client reply frame (reply.delta, reply.completed, reply.failed). */
export type ReplyFrame =
  | { type: 'reply.delta'; reply_id: string; seq: number; text: string }
  | { type: 'reply.completed'; reply_id: string; seq: number; content: string; citations: ReturnType<typeof citationToJson>[]; model?: string }
  | { type: 'reply.failed'; reply_id: string; seq: number; error: { code: string; message: string } };

/** replyFrame renders a ReplyEvent as its WebSocket frame; undefined for an event without a kind. */
export function replyFrame(e: eventsV1.ReplyEvent): ReplyFrame | undefined {
  const base = { reply_id: e.replyId, seq: e.seq };
  switch (e.kind?.$case) {
    case 'delta':
      return { type: 'reply.delta', ...base, text: e.kind.value.text };
    case 'completed':
      return {
        type: 'reply.completed',
        ...base,
        content: e.kind.value.content,
        citations: e.kind.value.citations.map(citationToJson),
        ...(e.kind.value.model ? { model: e.kind.value.model } : {}),
      };
    case 'failed':
      return { type: 'reply.failed', ...base, error: { code: e.kind.value.code || 'internal', message: e.kind.value.message || 'the reply failed' } };
    default:
      return undefined;
  }
}

/** A client → server frame after validation. */
export type ClientFrame =
  | { type: 'message'; content: string; client_id?: string }
  | { type: 'ping' }
  | { type: 'cancel'; reply_id: string }
  | { type: 'resume'; last_seq: number };

const KEYS: Record<ClientFrame['type'], { required: string[]; optional: string[] }> = {
  message: { required: ['content'], optional: ['client_id'] },
  ping: { required: [], optional: [] },
  cancel: { required: ['reply_id'], optional: [] },
  resume: { required: ['last_seq'], optional: [] },
};

/** parseClientFrame validates a text frame; on failure it returns the client-facing problem. */
export function parseClientFrame(text: string): { ok: true; frame: ClientFrame } | { ok: false; message: string; fields?: Record<string, string> } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, message: 'frame is not valid JSON' };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { ok: false, message: 'frame must be a JSON object' };
  const obj = raw as Record<string, unknown>;
  const type = obj.type;
  if (typeof type !== 'string' || !Object.hasOwn(KEYS, type)) {
    return { ok: false, message: 'unknown frame type; expected message, ping, cancel or resume', fields: { type: 'must be message, ping, cancel or resume' } };
  }
  const spec = KEYS[type as ClientFrame['type']];
  const fields: Record<string, string> = {};
  for (const k of Object.keys(obj)) if (k !== 'type' && !spec.required.includes(k) && !spec.optional.includes(k)) fields[k] = 'is not a known field';
  for (const k of spec.required) if (obj[k] === undefined) fields[k] = 'is required';
  const str = (k: string, min: number, max: number) => {
    const v = obj[k];
    if (v === undefined) return;
    if (typeof v !== 'string') fields[k] = 'must be a string';
    else if (v.length < min || v.length > max) fields[k] = `must be ${min}..${max} characters`;
  };
  if (type === 'message') {
    str('content', 1, 32_000);
    str('client_id', 1, 100);
  } else if (type === 'cancel') {
    str('reply_id', 1, 100);
  } else if (type === 'resume') {
    const v = obj.last_seq;
    if (v !== undefined && (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)) fields.last_seq = 'must be a whole number >= 0';
  }
  if (Object.keys(fields).length > 0) return { ok: false, message: `invalid ${type} frame`, fields };
  return { ok: true, frame: obj as ClientFrame };
}
