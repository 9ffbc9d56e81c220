/* JSON Schemas shared by the routes. Every object forbids unknown properties. */

/** An id in a path: a non-empty string of at most 100 characters. */
export const id = { type: 'string', minLength: 1, maxLength: 100 } as const;

/** params builds a path-parameter schema for the given names. */
export function params(...names: string[]) {
  return {
    type: 'object',
    required: names,
    additionalProperties: false,
    properties: Object.fromEntries(names.map((n) => [n, id])),
  } as const;
}

/** A whole number given in a query string (types are not coerced, so it is matched as text). */
export function queryInt(max: number) {
  return { type: 'string', pattern: '^[0-9]{1,6}$', description: `1..${max}` } as const;
}

export const settings = {
  type: 'object',
  additionalProperties: false,
  properties: {
    temperature: { type: 'number', minimum: 0, maximum: 2 },
    max_tokens: { type: 'integer', minimum: 1, maximum: 1_000_000 },
    history_budget_tokens: { type: 'integer', minimum: 0, maximum: 10_000_000 },
    retrieval: {
      type: 'object',
      additionalProperties: false,
      properties: {
        top_k: { type: 'integer', minimum: 1, maximum: 50 },
        score_threshold: { type: 'number', minimum: -1, maximum: 1 },
        mode: { type: 'string', enum: ['dense', 'hybrid'] },
        rerank: { type: 'boolean' },
        query_rewrite: { type: 'boolean' },
      },
    },
  },
} as const;
