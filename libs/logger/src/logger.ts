import { Writable } from 'node:stream';
import winston from 'winston';
import { currentContext } from './context.js';

/** Logger is the structured logger every module uses. */
export type Logger = winston.Logger;

/** Keys whose values are never written, at any depth. */
const SECRET_KEY = /(api[_-]?key|authorization|password|passwd|secret|token|credential|master[_-]?key|cookie)/i;
/** Values that look like secrets even under an innocent key, with what replaces them. */
const SECRET_VALUE: Array<[RegExp, string]> = [
  [/\bBearer\s+[A-Za-z0-9._~+/=-]+/gi, 'Bearer [REDACTED]'],
  [/\bsk-[A-Za-z0-9_-]{8,}/g, 'sk-[REDACTED]'],
  [/ws_token=[^&\s"]+/g, 'ws_token=[REDACTED]'],
];

/** redactText masks secret-looking substrings of a string. */
export function redactText(text: string): string {
  let out = text;
  for (const [re, replacement] of SECRET_VALUE) out = out.replace(re, replacement);
  return out;
}

/** redact copies a value with secret keys masked and secret-looking strings scrubbed. */
export function redact(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object' || depth > 6) return value;
  if (value instanceof Error) {
    return { name: value.name, message: redactText(value.message), stack: value.stack ? redactText(value.stack) : undefined };
  }
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) && v !== undefined && v !== null && typeof v !== 'boolean' && typeof v !== 'number' ? '[REDACTED]' : redact(v, depth + 1);
  }
  return out;
}

const redactFormat = winston.format((info) => {
  const ctx = currentContext();
  if (ctx) {
    info.trace_id ??= ctx.traceId;
    if (ctx.requestId) info.request_id ??= ctx.requestId;
  }
  for (const key of Object.keys(info)) {
    if (key === 'level' || key === 'timestamp') continue;
    info[key] = SECRET_KEY.test(key) ? '[REDACTED]' : redact(info[key]);
  }
  return info;
});

let root: Logger | undefined;
/** Every line written, for tests that prove what logs do or do not contain. */
const taps = new Set<(line: string) => void>();

/** TapTransport hands each formatted line to the registered taps. */
class TapTransport extends winston.transports.Stream {
  constructor() {
    super({
      stream: new Writable({
        write(chunk: Buffer, _enc: string, cb: () => void) {
          for (const tap of taps) tap(chunk.toString());
          cb();
        },
      }),
    });
  }
}

/** LoggerOptions configure the process-wide root logger. */
export interface LoggerOptions {
  level?: string;
  target?: string;
  silent?: boolean;
}

/** configureLogger (re)builds the root logger; called once by the launcher. */
export function configureLogger(options: LoggerOptions = {}): Logger {
  const format = winston.format.combine(winston.format.timestamp(), redactFormat(), winston.format.json());
  root = winston.createLogger({
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    defaultMeta: options.target ? { target: options.target } : {},
    format,
    transports: [
      new winston.transports.Console({ silent: options.silent ?? false, stderrLevels: ['error'] }),
      new TapTransport(),
    ],
  });
  return root;
}

/** getLogger returns a child logger labelled with a service (component) name. */
export function getLogger(service: string): Logger {
  root ??= configureLogger();
  return root.child({ service });
}

/** tapLogs calls fn with every formatted log line until the returned function is called. */
export function tapLogs(fn: (line: string) => void): () => void {
  taps.add(fn);
  return () => taps.delete(fn);
}
