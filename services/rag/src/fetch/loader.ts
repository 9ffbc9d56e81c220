import { AppError } from '@chat/errors';
import type { LoadedResource, UrlLoader } from '../domain/ingest.js';
import { PUBLIC_ONLY, type AddressPolicy } from './address.js';
import { extractDocument } from './extract.js';
import { checkUrl, DEFAULT_CONTENT_TYPES, FetchError, safeFetch, type FetchedResource, type FetchLimits, type Resolve } from './safe-fetch.js';

export { checkHost, checkIp, checkResolved, classifyIp, parseAllowList, parseIp, parseIPv4, parseIPv6, formatIp, PUBLIC_ONLY, type AddressPolicy, type AddressVerdict } from './address.js';
export { safeFetch, checkUrl, FetchError, DEFAULT_CONTENT_TYPES, type FetchLimits, type FetchedResource, type Resolve } from './safe-fetch.js';
export { extractDocument, ExtractError, type ExtractedDocument } from './extract.js';

/** SafeUrlLoaderOptions configure URL ingestion's fetching (RAG_FETCH_* variables). */
export interface SafeUrlLoaderOptions {
  policy?: AddressPolicy;
  limits: FetchLimits;
  contentTypes?: readonly string[];
  /** The resolver (tests inject one; default: the system resolver). */
  resolve?: Resolve;
  userAgent?: string;
}

type Loaded = LoadedResource & { resource: FetchedResource };

/** SafeUrlLoader is the UrlLoader of URL ingestion: the SSRF-safe fetcher and the text extractor. */
export class SafeUrlLoader implements UrlLoader<Loaded> {
  private readonly policy: AddressPolicy;

  constructor(private readonly options: SafeUrlLoaderOptions) {
    this.policy = options.policy ?? PUBLIC_ONLY;
  }

  check(url: string): string {
    try {
      return checkUrl(url, this.policy).href;
    } catch (err) {
      if (err instanceof FetchError) throw AppError.invalid(`url is not fetchable: ${err.message}`, { url: err.message });
      throw err;
    }
  }

  async fetch(url: string, signal: AbortSignal): Promise<Loaded> {
    const resource = await safeFetch(url, {
      policy: this.policy,
      limits: this.options.limits,
      contentTypes: this.options.contentTypes ?? DEFAULT_CONTENT_TYPES,
      resolve: this.options.resolve,
      userAgent: this.options.userAgent,
      signal,
    });
    return { url: resource.url, contentType: resource.contentType, bytes: resource.body.length, resource };
  }

  extract(loaded: Loaded): Promise<{ title: string; text: string }> {
    return extractDocument(loaded.resource);
  }
}
