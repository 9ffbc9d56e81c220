import { currentContext } from '@chat/logger';

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
