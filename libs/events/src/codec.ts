import { currentContext } from '@chat/logger';
import type { EventRecord } from './bus.js';
import { PermanentError } from './dead-letter.js';

/** Codec is the encode/decode pair ts-proto generates for a message. */
export interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

/** traceHeaders carries the current trace id into an event's headers. */
export function traceHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const ctx = currentContext();
  return ctx ? { 'x-trace-id': ctx.traceId, ...extra } : { ...extra };
}

/** encodeEvent serialises a protobuf event. */
export function encodeEvent<T>(codec: Codec<T>, message: T): Uint8Array {
  return codec.encode(message).finish();
}

/**
 * decodeEvent decodes a protobuf event, or throws a PermanentError (reason `undecodable`) so the
 * bus sends it straight to the dead-letter topic: redelivery cannot make it decode.
 */
export function decodeEvent<T>(codec: Codec<T>, record: EventRecord, what: string): T {
  try {
    return codec.decode(record.value);
  } catch (err) {
    throw new PermanentError(`undecodable ${what} event: ${err instanceof Error ? err.message : String(err)}`, { reason: 'undecodable', cause: err });
  }
}
