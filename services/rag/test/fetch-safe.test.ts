import assert from 'node:assert/strict';
import { parseAllowList, PUBLIC_ONLY } from '../src/fetch/address.js';
import { extractDocument } from '../src/fetch/extract.js';
import { FetchError, safeFetch, type FetchFailure, type FetchLimits, type Resolve } from '../src/fetch/safe-fetch.js';
import { closedPort, startTestSite, type TestSite } from './fetch/fixtures.js';

// Every connection these tests make goes to 127.0.0.1. Names are resolved by injected resolvers
// that answer loopback or refused addresses only; refused addresses are never connected to.

const LOOPBACK = parseAllowList('127.0.0.1/32');
const limits: FetchLimits = { maxBytes: 1024 * 1024, timeoutMs: 5_000, idleTimeoutMs: 2_000, maxRedirects: 5 };

async function fails(p: Promise<unknown>, failure: FetchFailure, message?: RegExp): Promise<FetchError> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    assert.ok(err instanceof FetchError, `expected a FetchError, got ${String(err)}`);
    assert.equal(err.failure, failure, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
  return caught as FetchError;
}

describe('the SSRF-safe fetcher against a local server', function () {
  this.timeout(30_000);
  let site: TestSite;

  before(async () => {
    site = await startTestSite();
  });
  after(async () => {
    await site.close();
  });

  it('refuses the loopback test server without the allow-list, and fetches it with the allow-list', async () => {
    await fails(safeFetch(`${site.base}/notes.txt`, { policy: PUBLIC_ONLY, limits }), 'blocked_address', /127\.0\.0\.1 is a loopback address/);
    assert.equal(site.hits.get('/notes.txt'), undefined, 'nothing reached the server');
    const res = await safeFetch(`${site.base}/notes.txt`, { policy: LOOPBACK, limits });
    assert.equal(res.status, 200);
    assert.equal(res.contentType, 'text/plain');
    assert.equal(res.charset, 'utf-8');
    assert.match(res.body.toString(), /ferry leaves Port Asterin/);
  });

  it('checks the resolved address when connecting: a name that resolves inside is refused', async () => {
    const resolve: Resolve = async () => [{ address: '127.0.0.1', family: 4 }];
    const url = `http://intranet.test:${site.port}/notes.txt`;
    await fails(safeFetch(url, { policy: PUBLIC_ONLY, limits, resolve }), 'blocked_address', /intranet\.test resolves to 127\.0\.0\.1 is a loopback address/);
    const metadata: Resolve = async () => [{ address: '169.254.169.254', family: 4 }];
    await fails(safeFetch(url, { policy: LOOPBACK, limits, resolve: metadata }), 'blocked_address', /cloud instance metadata/);
    const mapped: Resolve = async () => [{ address: '::ffff:10.0.0.7', family: 6 }];
    await fails(safeFetch(url, { policy: LOOPBACK, limits, resolve: mapped }), 'blocked_address', /IPv4-mapped IPv6 address of 10\.0\.0\.7, a private address/);
    // The same name is fetched when the allow-list covers the address it resolves to.
    const ok = await safeFetch(url, { policy: LOOPBACK, limits, resolve });
    assert.match(ok.body.toString(), /Port Asterin/);
    // Host allow-list entries open private answers for that name only.
    const byName = await safeFetch(url, { policy: parseAllowList('intranet.test'), limits, resolve });
    assert.equal(byName.status, 200);
  });

  it('resolves again on every hop, so a name that rebinds to a refused address is caught (DNS rebinding)', async () => {
    const answers = ['127.0.0.1', '169.254.169.254'];
    let calls = 0;
    const rebinding: Resolve = async () => [{ address: answers[Math.min(calls++, answers.length - 1)]!, family: 4 }];
    const url = `http://rebind.test:${site.port}/redirect?to=/notes.txt`;
    const before = site.hits.get('/notes.txt') ?? 0;
    await fails(safeFetch(url, { policy: LOOPBACK, limits, resolve: rebinding }), 'blocked_address', /rebind\.test resolves to 169\.254\.169\.254/);
    assert.equal(calls, 2, 'the second hop asked the resolver again');
    assert.equal(site.hits.get('/notes.txt') ?? 0, before, 'the refused second hop never reached the server');
  });

  it('checks every redirect hop: to a refused address, another scheme or a credentialed URL', async () => {
    const to = (target: string) => `${site.base}/redirect?to=${encodeURIComponent(target)}`;
    await fails(safeFetch(to('http://169.254.169.254/latest/meta-data/'), { policy: LOOPBACK, limits }), 'blocked_address', /cloud instance metadata/);
    await fails(safeFetch(to('http://[::ffff:a9fe:a9fe]/'), { policy: LOOPBACK, limits }), 'blocked_address', /169\.254\.169\.254/);
    await fails(safeFetch(to('http://0x7f.2/'), { policy: LOOPBACK, limits }), 'blocked_address', /127\.0\.0\.2 is a loopback address/);
    await fails(safeFetch(to('http://localhost/'), { policy: LOOPBACK, limits }), 'blocked_address', /localhost/);
    await fails(safeFetch(to('file:///etc/passwd'), { policy: LOOPBACK, limits }), 'bad_url', /only http and https/);
    await fails(safeFetch(to(`http://u:p@127.0.0.1:${site.port}/notes.txt`), { policy: LOOPBACK, limits }), 'bad_url', /credentials/);
    // An allowed relative redirect is followed and reported.
    const res = await safeFetch(to('/page.html'), { policy: LOOPBACK, limits });
    assert.equal(res.url, `${site.base}/page.html`);
    assert.equal(res.redirects.length, 1);
  });

  it('stops redirect loops and long redirect chains', async () => {
    await fails(safeFetch(`${site.base}/loop-a`, { policy: LOOPBACK, limits }), 'redirect_loop', /loop-a was already visited/);
    await fails(safeFetch(`${site.base}/chain?n=10`, { policy: LOOPBACK, limits }), 'too_many_redirects', /more than 5 redirects/);
    const ok = await safeFetch(`${site.base}/chain?n=3`, { policy: LOOPBACK, limits });
    assert.equal(ok.redirects.length, 4);
  });

  it('fails on HTTP errors, marking only server-side ones transient', async () => {
    const notFound = await fails(safeFetch(`${site.base}/missing`, { policy: LOOPBACK, limits }), 'http_status', /answered 404/);
    assert.equal(notFound.transient, false);
    const unavailable = await fails(safeFetch(`${site.base}/broken`, { policy: LOOPBACK, limits }), 'http_status', /answered 503/);
    assert.equal(unavailable.transient, true);
  });

  it('fails on an unreachable host (a closed loopback port), transiently', async () => {
    const port = await closedPort();
    const err = await fails(safeFetch(`http://127.0.0.1:${port}/`, { policy: LOOPBACK, limits }), 'connection_failed', /ECONNREFUSED/);
    assert.equal(err.transient, true);
  });

  it('refuses content types it does not ingest', async () => {
    await fails(safeFetch(`${site.base}/binary`, { policy: LOOPBACK, limits }), 'unsupported_content_type', /application\/octet-stream is not ingested/);
    await fails(safeFetch(`${site.base}/page.html`, { policy: LOOPBACK, limits, contentTypes: ['application/pdf'] }), 'unsupported_content_type', /text\/html/);
  });

  it('cuts bodies at the byte limit: declared, streamed without a length, and decompressed', async () => {
    await fails(safeFetch(`${site.base}/declared-huge`, { policy: LOOPBACK, limits }), 'too_large', /52428800 bytes; the limit is 1048576/);
    await fails(safeFetch(`${site.base}/huge`, { policy: LOOPBACK, limits }), 'too_large', /larger than the limit of 1048576 bytes/);
    await fails(safeFetch(`${site.base}/gzip-bomb`, { policy: LOOPBACK, limits }), 'too_large', /larger than the limit/);
    const gz = await safeFetch(`${site.base}/gzip`, { policy: LOOPBACK, limits });
    assert.equal(gz.body.toString(), 'Compressed notes about the harbour oven.');
  });

  it('fails a trickling server at the total deadline and a silent one at the idle limit', async () => {
    const trickle = await fails(safeFetch(`${site.base}/trickle`, { policy: LOOPBACK, limits: { ...limits, timeoutMs: 1_000, idleTimeoutMs: 500 } }), 'timeout', /within 1000 ms/);
    assert.equal(trickle.transient, true);
    await fails(safeFetch(`${site.base}/silent`, { policy: LOOPBACK, limits: { ...limits, timeoutMs: 5_000, idleTimeoutMs: 300 } }), 'idle_timeout', /nothing for 300 ms/);
    await fails(safeFetch(`${site.base}/no-headers`, { policy: LOOPBACK, limits: { ...limits, timeoutMs: 5_000, idleTimeoutMs: 300 } }), 'idle_timeout');
  });

  it('stops when the caller aborts', async () => {
    const ac = new AbortController();
    const p = safeFetch(`${site.base}/silent`, { policy: LOOPBACK, limits, signal: ac.signal });
    setTimeout(() => ac.abort(), 100);
    await fails(p, 'aborted');
  });

  it('extracts the main text of an HTML page (without navigation, footer and scripts) and keeps its title', async () => {
    const res = await safeFetch(`${site.base}/page.html`, { policy: LOOPBACK, limits });
    const doc = await extractDocument(res);
    assert.equal(doc.format, 'html');
    assert.match(doc.title, /Velmora/);
    assert.match(doc.text, /Captain Orla Brennick/);
    assert.match(doc.text, /smoked seaweed/);
    assert.doesNotMatch(doc.text, /NAV-NOISE|FOOTER-NOISE|SCRIPT-NOISE/);
    assert.match(doc.text, /thirty years[^\n]*\n\nThe island soup/, 'paragraphs stay apart');
  });

  it('extracts the text and title of a real PDF, also when the server sends no content type', async () => {
    const doc = await extractDocument(await safeFetch(`${site.base}/doc.pdf`, { policy: LOOPBACK, limits }));
    assert.equal(doc.format, 'pdf');
    assert.equal(doc.title, 'Lighthouse report');
    assert.match(doc.text, /The lighthouse keeper is Captain Orla Brennick\./);
    assert.match(doc.text, /first lit in 1871/);
    const sniffed = await extractDocument(await safeFetch(`${site.base}/untyped`, { policy: LOOPBACK, limits }));
    assert.equal(sniffed.format, 'pdf');
    assert.match(sniffed.text, /untyped PDF body is sniffed/);
  });

  it('reads plain text, Markdown and declared charsets; refuses binary bodies, broken PDFs and pages without text', async () => {
    assert.match((await extractDocument(await safeFetch(`${site.base}/notes.md`, { policy: LOOPBACK, limits }))).text, /\*\*Port Asterin\*\*/);
    assert.equal((await extractDocument(await safeFetch(`${site.base}/latin1.txt`, { policy: LOOPBACK, limits }))).text, 'Café au lait in Velmora');
    await assert.rejects(extractDocument(await safeFetch(`${site.base}/binary-as-text`, { policy: LOOPBACK, limits })), /looks binary/);
    await assert.rejects(extractDocument(await safeFetch(`${site.base}/empty.html`, { policy: LOOPBACK, limits })), /has no text to index/);
    await assert.rejects(extractDocument({ body: Buffer.from('%PDF-1.4 this is not really a pdf'), contentType: 'application/pdf', charset: '', url: 'x' }), /PDF could not be read/);
  });
});
