import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

/**
 * makePdf writes a real, minimal PDF 1.4 document (one page, Helvetica text, a correct xref table
 * and an Info dictionary with the title), so PDF extraction is tested on an actual file.
 */
export function makePdf(lines: readonly string[], title = 'Lighthouse report'): Buffer {
  const esc = (s: string) => s.replace(/[\\()]/g, (c) => `\\${c}`);
  const content = `BT /F1 12 Tf 72 720 Td 14 TL\n${lines.map((l) => `(${esc(l)}) Tj T*`).join('\n')}\nET`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${Buffer.byteLength(content, 'latin1')} >>\nstream\n${content}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
    `<< /Title (${esc(title)}) /Producer (rag tests) >>`,
  ];
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((o, i) => {
    offsets.push(Buffer.byteLength(out, 'latin1'));
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = Buffer.byteLength(out, 'latin1');
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n${offsets.map((o) => `${String(o).padStart(10, '0')} 00000 n \n`).join('')}`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** An article page with navigation, a footer and scripts around the main text. */
export const ARTICLE_HTML = `<!doctype html>
<html><head><meta charset="utf-8"><title>Velmora island guide</title><script>var tracking = "SCRIPT-NOISE";</script></head>
<body>
<nav><a href="/">Home</a> <a href="/shop">NAV-NOISE shop</a></nav>
<header><h1>Site banner</h1></header>
<main><article>
<h1>The lighthouse of Velmora</h1>
<p>The lighthouse of Velmora was built in 1871 on the northern cliffs. Its keeper is Captain Orla Brennick, who has lit the lamp every night for thirty years and keeps a logbook of every ship that passes.</p>
<p>The island soup is famous across the archipelago. Its secret ingredient is smoked seaweed harvested at dawn, and it is always served with dark rye bread baked in the harbour oven.</p>
<p>Visitors reach the island by the morning ferry from Port Asterin. The crossing takes two hours, and dolphins often follow the boat through the channel.</p>
</article></main>
<footer>FOOTER-NOISE copyright 2026</footer>
</body></html>`;

/** TestSite is a local HTTP server (127.0.0.1 only) serving the fixtures the fetch tests need. */
export interface TestSite {
  server: Server;
  port: number;
  base: string;
  /** How many requests reached each path. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

/** startTestSite serves the fixture routes; extra routes can be added by the caller. */
export async function startTestSite(extra: Record<string, (req: IncomingMessage, res: ServerResponse) => void> = {}): Promise<TestSite> {
  const hits = new Map<string, number>();
  const timers = new Set<NodeJS.Timeout>();
  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const routes: Record<string, (req: IncomingMessage, res: ServerResponse, url: URL) => void> = {
    '/page.html': (_req, res) => send(res, 200, 'text/html; charset=utf-8', ARTICLE_HTML),
    '/doc.pdf': (_req, res) => send(res, 200, 'application/pdf', makePdf(['The lighthouse keeper is Captain Orla Brennick.', 'The lamp was first lit in 1871.'])),
    '/notes.txt': (_req, res) => send(res, 200, 'text/plain; charset=utf-8', 'Plain notes: the ferry leaves Port Asterin at seven.'),
    '/notes.md': (_req, res) => send(res, 200, 'text/markdown', '# Ferry\n\nThe ferry leaves **Port Asterin** at seven.'),
    '/latin1.txt': (_req, res) => send(res, 200, 'text/plain; charset=iso-8859-1', Buffer.from('Caf\xe9 au lait in Velmora', 'latin1')),
    '/untyped': (_req, res) => {
      res.writeHead(200);
      res.end(makePdf(['An untyped PDF body is sniffed.']));
    },
    '/redirect': (_req, res, url) => {
      res.writeHead(302, { location: url.searchParams.get('to') ?? '/' });
      res.end();
    },
    '/loop-a': (_req, res) => {
      res.writeHead(301, { location: '/loop-b' });
      res.end();
    },
    '/loop-b': (_req, res) => {
      res.writeHead(307, { location: '/loop-a' });
      res.end();
    },
    '/chain': (_req, res, url) => {
      const n = Number(url.searchParams.get('n') ?? '0');
      res.writeHead(302, { location: n > 0 ? `/chain?n=${n - 1}` : '/notes.txt' });
      res.end();
    },
    '/missing': (_req, res) => send(res, 404, 'text/html', '<h1>Not found</h1>'),
    '/broken': (_req, res) => send(res, 503, 'text/plain', 'try later'),
    '/binary': (_req, res) => send(res, 200, 'application/octet-stream', Buffer.from([0, 1, 2, 3, 255, 254, 0, 0])),
    '/binary-as-text': (_req, res) => {
      const b = Buffer.alloc(4096);
      for (let i = 0; i < b.length; i++) b[i] = (i * 7919) % 256;
      send(res, 200, 'text/plain', b);
    },
    '/empty.html': (_req, res) => send(res, 200, 'text/html', '<html><head><title>Nothing</title></head><body><script>x()</script></body></html>'),
    '/declared-huge': (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(50 * 1024 * 1024) });
      res.write('x'.repeat(1024));
      // The client must give up on the header alone; end the response so nothing lingers.
      later(50, () => res.destroy());
    },
    '/huge': (_req, res) => {
      // 50 MB of text without Content-Length, written until the client hangs up (bounded).
      res.writeHead(200, { 'content-type': 'text/plain' });
      const piece = 'All work and no play makes a huge page. '.repeat(1600); // 64 KB
      let sent = 0;
      const pump = () => {
        while (sent < 50 * 1024 * 1024 && !res.destroyed) {
          sent += piece.length;
          if (!res.write(piece)) {
            res.once('drain', pump);
            return;
          }
        }
        res.end();
      };
      res.on('close', () => res.removeAllListeners('drain'));
      pump();
    },
    '/gzip': (_req, res) => send(res, 200, 'text/plain', gzipSync('Compressed notes about the harbour oven.'), { 'content-encoding': 'gzip' }),
    '/gzip-bomb': (_req, res) => send(res, 200, 'text/plain', gzipSync(Buffer.alloc(30 * 1024 * 1024, 'a')), { 'content-encoding': 'gzip' }),
    '/trickle': (_req, res) => {
      // One byte every 100 ms, forever (bounded to 600 bytes): never idle long, never done in time.
      res.writeHead(200, { 'content-type': 'text/plain' });
      let n = 0;
      const tick = () => {
        if (res.destroyed || n++ >= 600) {
          res.end();
          return;
        }
        res.write('.');
        later(100, tick);
      };
      tick();
    },
    '/silent': (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first bytes, then silence');
      later(10_000, () => res.end());
    },
    '/no-headers': (_req, res) => {
      later(10_000, () => send(res, 200, 'text/plain', 'too late'));
    },
  };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    hits.set(url.pathname, (hits.get(url.pathname) ?? 0) + 1);
    const extraRoute = extra[url.pathname];
    if (extraRoute) return extraRoute(req, res);
    const route = routes[url.pathname];
    if (!route) return send(res, 404, 'text/plain', 'no such fixture');
    route(req, res, url);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    base: `http://127.0.0.1:${port}`,
    hits,
    close: async () => {
      for (const t of timers) clearTimeout(t);
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** closedPort is a loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
