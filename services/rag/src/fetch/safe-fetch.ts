import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import https from 'node:https';
import type { LookupAddress } from 'node:dns';
import type { Socket } from 'node:net';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { Transform } from 'node:stream';
import { checkHost, checkIp, checkResolved, hostAllowListed, type AddressPolicy } from './address.js';

/** FetchFailure names why a fetch failed; FetchError.transient says whether trying again may help. */
export type FetchFailure =
  | 'bad_url'
  | 'blocked_address'
  | 'dns_failed'
  | 'connection_failed'
  | 'timeout'
  | 'idle_timeout'
  | 'too_large'
  | 'too_many_redirects'
  | 'redirect_loop'
  | 'http_status'
  | 'unsupported_content_type'
  | 'aborted';

/** FetchError is a fetch that did not produce a document, with a message fit for a job's error. */
export class FetchError extends Error {
  override readonly name = 'FetchError';
  constructor(
    readonly failure: FetchFailure,
    message: string,
    /** True when the same fetch may succeed later (connection refused, 5xx, timeouts). */
    readonly transient = false,
    readonly status?: number,
  ) {
    super(message);
  }
}

/** FetchLimits bound one fetch (all of its redirect hops together). */
export interface FetchLimits {
  /** Largest body, in bytes (after decompression). */
  maxBytes: number;
  /** Longest the whole fetch may take, redirects included. */
  timeoutMs: number;
  /** Longest the server may stay silent (connecting, before headers, between body bytes). */
  idleTimeoutMs: number;
  /** Most redirects followed. */
  maxRedirects: number;
}

/** The media types fetched by default: web pages, plain text, Markdown and PDF. */
export const DEFAULT_CONTENT_TYPES: readonly string[] = ['text/html', 'application/xhtml+xml', 'text/plain', 'text/markdown', 'text/x-markdown', 'application/pdf'];

/** Resolve turns a host name into addresses (injected in tests; default: the system resolver). */
export type Resolve = (hostname: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

/** SafeFetchOptions configure safeFetch. */
export interface SafeFetchOptions {
  policy: AddressPolicy;
  limits: FetchLimits;
  /** Allowed media types (lower case, no parameters); a response without Content-Type is allowed and sniffed. */
  contentTypes?: readonly string[];
  resolve?: Resolve;
  userAgent?: string;
  signal?: AbortSignal;
}

/** FetchedResource is a successful response's body and what is needed to read it. */
export interface FetchedResource {
  /** The final URL, after redirects. */
  url: string;
  status: number;
  /** The media type (lower case, no parameters), '' when the server sent none. */
  contentType: string;
  /** The charset parameter of Content-Type, '' when none. */
  charset: string;
  body: Buffer;
  /** The URLs redirected from, in order. */
  redirects: string[];
}

const defaultResolve: Resolve = (hostname) => dnsLookup(hostname, { all: true, verbatim: true });

/**
 * checkUrl parses a URL and checks what can be checked before any connection: http or https, no
 * credentials, a well-formed host, and — for a literal address — that it is allowed. Names are
 * checked again, address by address, when the connection is made.
 */
export function checkUrl(raw: string, policy: AddressPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new FetchError('bad_url', `${JSON.stringify(raw.slice(0, 200))} is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FetchError('bad_url', `only http and https URLs are fetched, not ${url.protocol.replace(/:$/, '')}`);
  if (url.username || url.password) throw new FetchError('bad_url', 'URLs with credentials (user:password@) are not fetched');
  if (!url.hostname) throw new FetchError('bad_url', 'the URL has no host');
  const host = checkHost(url.hostname, policy);
  if (!host.verdict.allowed) throw new FetchError('blocked_address', `refused to fetch ${url.hostname}: ${host.verdict.reason}`);
  return url;
}

/** mediaType splits a Content-Type header into its lower-case type and charset. */
export function mediaType(header: string | undefined): { type: string; charset: string } {
  if (!header) return { type: '', charset: '' };
  const [type, ...params] = header.split(';');
  const charset = params.map((p) => p.trim().match(/^charset\s*=\s*"?([^";]+)"?$/i)?.[1]).find(Boolean) ?? '';
  return { type: (type ?? '').trim().toLowerCase(), charset: charset.toLowerCase() };
}

interface HopResult {
  status: number;
  location?: string;
  contentType: string;
  charset: string;
  body?: Buffer;
}

/**
 * safeFetch GETs a URL for ingestion. Every address is checked when the connection is made (the
 * resolver's answer is checked inside the socket's lookup, so a name that changes its answer
 * between a check and the connection — DNS rebinding — cannot slip through), on every redirect
 * hop; redirects are followed by hand up to a limit, with loop detection; the body is counted as
 * it streams and cut at the byte limit; the whole fetch has a deadline and the server an idle limit.
 */
export async function safeFetch(rawUrl: string, options: SafeFetchOptions): Promise<FetchedResource> {
  const { policy, limits } = options;
  const allowedTypes = options.contentTypes ?? DEFAULT_CONTENT_TYPES;
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new FetchError('timeout', `the fetch did not finish within ${limits.timeoutMs} ms`, true)), limits.timeoutMs);
  const onOuterAbort = () => deadline.abort(new FetchError('aborted', 'the fetch was cancelled', true));
  if (options.signal?.aborted) onOuterAbort();
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  try {
    let url = checkUrl(rawUrl, policy);
    const visited = new Set<string>();
    const redirects: string[] = [];
    for (;;) {
      const key = withoutHash(url);
      if (visited.has(key)) throw new FetchError('redirect_loop', `redirect loop: ${key} was already visited (${[...redirects, key].join(' → ')})`);
      visited.add(key);
      const hop = await fetchOnce(url, options, allowedTypes, deadline.signal);
      if (hop.location === undefined) {
        return { url: url.href, status: hop.status, contentType: hop.contentType, charset: hop.charset, body: hop.body!, redirects };
      }
      if (redirects.length >= limits.maxRedirects) throw new FetchError('too_many_redirects', `more than ${limits.maxRedirects} redirects (last from ${key})`);
      let next: URL;
      try {
        next = new URL(hop.location, url);
      } catch {
        throw new FetchError('bad_url', `the redirect from ${key} points to an invalid URL`);
      }
      redirects.push(key);
      url = checkUrl(next.href, policy);
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onOuterAbort);
  }
}

function withoutHash(url: URL): string {
  const u = new URL(url.href);
  u.hash = '';
  return u.href;
}

/** The socket's lookup: resolve, then refuse the whole name when any address is not allowed. */
function checkedLookup(policy: AddressPolicy, resolve: Resolve) {
  return (hostname: string, opts: { family?: number | string; all?: boolean }, callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void): void => {
    resolve(hostname).then(
      (found) => {
        const family = opts.family === 'IPv4' ? 4 : opts.family === 'IPv6' ? 6 : Number(opts.family ?? 0);
        const list = found.filter((a) => !family || a.family === family);
        const checked = checkResolved(hostname, list.map((a) => a.address), policy);
        if (!Array.isArray(checked)) {
          const err = new FetchError(checked.category === 'malformed' ? 'dns_failed' : 'blocked_address', `refused to connect: ${checked.refused}`);
          callback(err as unknown as NodeJS.ErrnoException, '');
          return;
        }
        if (opts.all) callback(null, list.map((a) => ({ address: a.address, family: a.family })));
        else callback(null, list[0]!.address, list[0]!.family);
      },
      (err: NodeJS.ErrnoException) => {
        const transient = err.code === 'EAI_AGAIN';
        callback(new FetchError('dns_failed', `could not resolve ${hostname}: ${err.code ?? err.message}`, transient) as unknown as NodeJS.ErrnoException, '');
      },
    );
  };
}

const TRANSIENT_NET = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'EAI_AGAIN']);

function fetchOnce(url: URL, options: SafeFetchOptions, allowedTypes: readonly string[], signal: AbortSignal): Promise<HopResult> {
  const { limits, policy } = options;
  const host = checkHost(url.hostname, policy);
  return new Promise<HopResult>((resolvePromise, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(toFetchError(err, url));
    };
    const done = (r: HopResult) => {
      if (settled) return;
      settled = true;
      resolvePromise(r);
    };
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request({
      protocol: url.protocol,
      // A bracketed IPv6 literal is given to the socket without its brackets.
      hostname: host.kind === 'ip' ? url.hostname.replace(/^\[|\]$/g, '') : url.hostname,
      port: url.port || undefined,
      path: `${url.pathname}${url.search}`,
      method: 'GET',
      agent: false,
      lookup: checkedLookup(policy, options.resolve ?? defaultResolve) as unknown as typeof import('node:dns').lookup,
      headers: {
        'user-agent': options.userAgent ?? 'persona-chat-mesh-ingest/1.0',
        accept: `${allowedTypes.join(', ')};q=0.9, */*;q=0.1`,
        'accept-encoding': 'gzip, deflate, br',
      },
      timeout: limits.idleTimeoutMs,
    });
    const onAbort = () => fail(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    const cleanup = () => signal.removeEventListener('abort', onAbort);
    req.on('timeout', () => fail(new FetchError('idle_timeout', `the server sent nothing for ${limits.idleTimeoutMs} ms`, true)));
    req.on('error', (err) => {
      cleanup();
      fail(err);
    });
    req.on('socket', (socket: Socket) => {
            // Second line of defence: the address actually connected to must pass the same check.
      socket.once('connect', () => {
        const remote = socket.remoteAddress;
        if (!remote) return;
        const verdict = checkIp(remote, policy, host.kind === 'name' ? host.allowListed : hostAllowListed(policy, remote));
        if (!verdict.allowed) fail(new FetchError('blocked_address', `refused to connect to ${url.hostname}: ${verdict.reason}`));
      });
    });
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      const { type, charset } = mediaType(res.headers['content-type']);
      if (status >= 300 && status < 400 && status !== 304 && res.headers.location) {
        res.resume();
        cleanup();
        req.destroy();
        done({ status, location: res.headers.location, contentType: type, charset });
        return;
      }
      if (status < 200 || status >= 300) {
        res.resume();
        cleanup();
        const transient = status >= 500 || status === 429 || status === 408;
        fail(new FetchError('http_status', `the server answered ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}`, transient, status));
        return;
      }
      if (type && !allowedTypes.includes(type)) {
        res.resume();
        cleanup();
        fail(new FetchError('unsupported_content_type', `content type ${type} is not ingested (allowed: ${allowedTypes.join(', ')})`));
        return;
      }
      const declared = Number(res.headers['content-length']);
      const encoding = String(res.headers['content-encoding'] ?? 'identity').toLowerCase().trim();
      if (encoding === 'identity' && Number.isFinite(declared) && declared > limits.maxBytes) {
        res.resume();
        cleanup();
        fail(new FetchError('too_large', `the response is ${declared} bytes; the limit is ${limits.maxBytes} bytes`));
        return;
      }
      let stream: NodeJS.ReadableStream = res;
      let decoder: Transform | undefined;
      if (encoding === 'gzip' || encoding === 'x-gzip') decoder = createGunzip();
      else if (encoding === 'deflate') decoder = createInflate();
      else if (encoding === 'br') decoder = createBrotliDecompress();
      else if (encoding !== 'identity') {
        res.resume();
        cleanup();
        fail(new FetchError('unsupported_content_type', `content encoding ${encoding} is not supported`));
        return;
      }
      if (decoder) {
        decoder.on('error', (err) => fail(new FetchError('connection_failed', `the response could not be decompressed: ${err.message}`)));
        stream = res.pipe(decoder);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > limits.maxBytes) {
          cleanup();
          decoder?.destroy();
          fail(new FetchError('too_large', `the response is larger than the limit of ${limits.maxBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      stream.on('end', () => {
        cleanup();
        done({ status, contentType: type, charset, body: Buffer.concat(chunks) });
      });
      res.on('aborted', () => fail(new FetchError('connection_failed', 'the server closed the connection before the body ended', true)));
      res.on('error', (err) => fail(err));
    });
    req.end();
  });
}

function toFetchError(err: unknown, url: URL): FetchError {
  if (err instanceof FetchError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  const code = e?.code ?? '';
  if (code === 'ENOTFOUND') return new FetchError('dns_failed', `could not resolve ${url.hostname}`);
  if (TRANSIENT_NET.has(code)) return new FetchError('connection_failed', `could not connect to ${url.host}: ${code}`, true);
  if (code.startsWith('ERR_TLS') || code.includes('CERT') || code.startsWith('ERR_SSL')) return new FetchError('connection_failed', `TLS failed for ${url.host}: ${code}`);
  return new FetchError('connection_failed', `the fetch of ${url.host} failed: ${code || e?.message || String(err)}`, true);
}
