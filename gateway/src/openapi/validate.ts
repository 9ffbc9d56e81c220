import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ValidateFunction } from 'ajv';

type Json = Record<string, any>;

/** What one HTTP response was, for checking against the document. */
export interface ObservedResponse {
  method: string;
  /** The fastify route pattern (`/api/personas/:id`), or undefined when no route matched. */
  route: string | undefined;
  status: number;
  contentType: string | undefined;
  body: string;
}

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

/**
 * ResponseChecker checks responses against an OpenAPI 3.1 document with ajv (JSON Schema 2020-12):
 * the route and status must be documented, the content type must be one the document names, and a
 * JSON body must match its schema. A response of no route must be the error body.
 */
export class ResponseChecker {
  private readonly ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(readonly doc: Json) {
    this.ajv.addSchema(doc, 'openapi.json');
  }

  private validator(path: string): ValidateFunction {
    let v = this.compiled.get(path);
    if (!v) {
      v = this.ajv.getSchema(`openapi.json#${path}`);
      if (!v) throw new Error(`no schema at ${path}`);
      this.compiled.set(path, v);
    }
    return v;
  }

  /** validateSchema validates a value against a component schema (e.g. ServerFrame); the problems, or []. */
  validateComponent(name: string, value: unknown): string[] {
    const v = this.validator(`/${pointer('components', 'schemas', name)}`);
    return v(value) ? [] : [`${name}: ${this.ajv.errorsText(v.errors, { separator: '; ' })} in ${JSON.stringify(value).slice(0, 500)}`];
  }

  /** check returns the problems of one response ([] when it matches the document). */
  check(r: ObservedResponse): string[] {
    const where = `${r.method} ${r.route ?? '(no route)'} → ${r.status}`;
    const type = r.contentType?.split(';')[0]?.trim().toLowerCase();
    if (r.route === undefined) {
      if (type !== 'application/json') return [`${where}: content type ${type} is not the error body's application/json`];
      return this.validateComponent('ErrorBody', safeParse(r.body)).map((p) => `${where}: ${p}`);
    }
    const path = r.route.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const method = r.method.toLowerCase() === 'head' ? 'get' : r.method.toLowerCase();
    const op = this.doc.paths?.[path]?.[method] as Json | undefined;
    if (!op) return [`${where}: ${method.toUpperCase()} ${path} is not in the OpenAPI document`];
    const code = String(r.status);
    const key = [code, `${code[0]}XX`, 'default'].find((k) => op.responses?.[k]);
    if (!key) return [`${where}: status ${code} is not documented for ${method.toUpperCase()} ${path}`];
    const content = op.responses[key].content as Json | undefined;
    if (!content) return r.body.length === 0 || method === 'head' ? [] : [`${where}: documented without a body, but answered ${r.body.length} bytes`];
    if (method === 'head') return [];
    if (!type || !content[type]) return [`${where}: content type ${type} is not documented (${Object.keys(content).join(', ')})`];
    if (type !== 'application/json') return [];
    const v = this.validator(`/${pointer('paths', path, method, 'responses', key, 'content', type, 'schema')}`);
    const body = safeParse(r.body);
    return v(body) ? [] : [`${where}: ${this.ajv.errorsText(v.errors, { separator: '; ' })} in ${r.body.slice(0, 500)}`];
  }
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return Symbol('not JSON');
  }
}
