/* A self-contained, human-readable page of the OpenAPI document (no scripts, no CDN, no internet). */

type Json = Record<string, any>;

const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** schemaHtml renders a schema as indented JSON with $refs linked to their component. */
function schemaHtml(schema: unknown): string {
  const text = esc(JSON.stringify(schema, null, 2));
  return `<pre>${text.replace(/&#34;#\/components\/schemas\/([A-Za-z0-9]+)&#34;/g, (_m, name: string) => `&#34;<a href="#schema-${name}">#/components/schemas/${name}</a>&#34;`)}</pre>`;
}

function operationHtml(method: string, path: string, op: Json): string {
  const params = (op.parameters ?? []) as Json[];
  const rows = params
    .map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${p.required ? 'yes' : ''}</td><td><code>${esc(JSON.stringify(p.schema))}</code> ${esc(p.description ?? '')}</td></tr>`)
    .join('');
  const body = op.requestBody?.content?.['application/json']?.schema;
  const responses = Object.entries((op.responses ?? {}) as Json)
    .map(([code, r]) => {
      const content = Object.entries((r.content ?? {}) as Json).map(([type, c]) => `<div class="ct">${esc(type)}</div>${schemaHtml(c.schema)}`).join('');
      const headers = r.headers ? `<div class="ct">headers: ${esc(Object.keys(r.headers).join(', '))}</div>` : '';
      return `<li><b>${esc(code)}</b> ${esc(r.description ?? '')}${headers}${content}</li>`;
    })
    .join('');
  const extra = op['x-websocket'] ? `<h4>WebSocket frames</h4>${schemaHtml(op['x-websocket'])}` : '';
  const secured = Array.isArray(op.security) && op.security.length > 0;
  return `<section class="op" id="op-${esc(op.operationId)}">
<h3><span class="m m-${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code>${secured ? ' <span class="lock">Bearer key</span>' : ''}</h3>
${op.summary ? `<p>${esc(op.summary)}</p>` : ''}${op.description ? `<p>${esc(op.description)}</p>` : ''}
${rows ? `<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>schema</th></tr>${rows}</table>` : ''}
${body ? `<h4>Request body (application/json)</h4>${schemaHtml(body)}` : ''}
<h4>Responses</h4><ul>${responses}</ul>${extra}</section>`;
}

/** docsPage renders the whole document as one HTML page. */
export function docsPage(doc: Json): string {
  const ops: Array<{ tag: string; method: string; path: string; op: Json }> = [];
  for (const [path, item] of Object.entries((doc.paths ?? {}) as Json)) {
    for (const [method, op] of Object.entries(item as Json)) ops.push({ tag: (op.tags?.[0] as string) ?? 'other', method, path, op });
  }
  const tags = [...new Set(ops.map((o) => o.tag))];
  const toc = tags
    .map((t) => `<li>${esc(t)}<ul>${ops.filter((o) => o.tag === t).map((o) => `<li><a href="#op-${esc(o.op.operationId)}">${esc(o.method.toUpperCase())} ${esc(o.path)}</a></li>`).join('')}</ul></li>`)
    .join('');
  const sections = tags.map((t) => `<h2>${esc(t)}</h2>${ops.filter((o) => o.tag === t).map((o) => operationHtml(o.method, o.path, o.op)).join('')}`).join('');
  const schemas = Object.entries((doc.components?.schemas ?? {}) as Json)
    .map(([name, s]) => `<section id="schema-${esc(name)}"><h3>${esc(name)}</h3>${schemaHtml(s)}</section>`)
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(doc.info?.title)} — API reference</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#1d1d1f}
code,pre{font:13px ui-monospace,monospace}pre{background:#f5f5f7;padding:.6em;overflow:auto;border-radius:4px;max-height:28em}
.op{border-top:1px solid #ddd;padding:.5em 0}.m{display:inline-block;min-width:4.5em;text-align:center;color:#fff;border-radius:3px;padding:0 .3em}
.m-get{background:#0b7285}.m-post{background:#2b8a3e}.m-patch{background:#e67700}.m-delete{background:#c92a2a}.m-put{background:#5f3dc4}
.lock{font-size:12px;color:#555;border:1px solid #bbb;border-radius:3px;padding:0 .3em}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
.ct{color:#555;font-size:12px;margin-top:.3em}
</style></head><body>
<h1>${esc(doc.info?.title)} <small>${esc(doc.info?.version)}</small></h1>
<p>OpenAPI ${esc(doc.openapi)} document: <a href="/openapi.json">/openapi.json</a>.</p>
<pre style="white-space:pre-wrap;max-height:none">${esc(doc.info?.description ?? '')}</pre>
<h2>Contents</h2><ul>${toc}<li><a href="#schemas">Schemas</a></li></ul>
${sections}
<h2 id="schemas">Schemas</h2>${schemas}
</body></html>`;
}
