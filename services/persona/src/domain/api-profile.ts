import { AppError } from '@chat/errors';

/** The LLM API providers a profile may name. */
export const PROVIDERS = ['openai', 'openai_compatible', 'azure_openai', 'ollama', 'vllm'] as const;
export type Provider = (typeof PROVIDERS)[number];

/** Providers that cannot work without an API key. */
const KEY_REQUIRED: ReadonlySet<string> = new Set(['openai', 'azure_openai']);

/** ApiProfileLimits bound one profile's use; unset means no limit of our own. */
export interface ApiProfileLimits {
  max_concurrent_generations?: number;
  requests_per_minute?: number;
}

/** The sealed API key as stored (AES-256-GCM, associated data = profile id). */
export interface SealedKey {
  ciphertext: Buffer;
  iv: Buffer;
  tag: Buffer;
  keyVersion: string;
  fingerprint: string;
}

/** ApiProfile is a stored profile; its key only ever exists sealed here. */
export interface ApiProfile {
  id: string;
  ownerId: string;
  name: string;
  provider: string;
  baseUrl: string;
  model: string;
  embeddingModel: string | null;
  embeddingBaseUrl: string | null;
  limits: ApiProfileLimits;
  apiKey: SealedKey | null;
  createdAt: Date;
  updatedAt: Date;
}

/** ApiProfileInput is a validated profile before storage; apiKey is the plaintext to seal, null for none. */
export interface ApiProfileInput {
  ownerId: string;
  name: string;
  provider: string;
  baseUrl: string;
  model: string;
  embeddingModel: string | null;
  embeddingBaseUrl: string | null;
  limits: ApiProfileLimits;
  /** Plaintext key to seal; null for none; undefined (updates only) keeps the stored one. */
  apiKey: string | null | undefined;
}

export const PROFILE_LIMITS = { name: 200, model: 200, url: 2_000, apiKey: 4_096 } as const;

/** checkUrl returns what is wrong with an endpoint URL, or undefined. */
function checkUrl(value: string): string | undefined {
  if (value.length > PROFILE_LIMITS.url) return `must be at most ${PROFILE_LIMITS.url} characters`;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an http or https URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return 'must be an http or https URL';
  // Credentials in a URL would be shown back in responses: keys go in api_key only.
  if (url.username || url.password) return 'must not contain credentials (put the key in api_key)';
  return undefined;
}

function checkInt(fields: Record<string, string>, path: string, v: number | undefined, min: number, max: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min || v > max)) fields[path] = `must be a whole number from ${min} to ${max}`;
}

/**
 * validateApiProfile checks every field and reports all problems at once, by field. Messages never
 * repeat the api_key.
 */
export function validateApiProfile(input: ApiProfileInput, hasStoredKey = false): ApiProfileInput {
  const fields: Record<string, string> = {};
  if (!input.ownerId) fields.owner_id = 'is required';
  const name = input.name.trim();
  if (!name) fields.name = 'is required';
  else if (name.length > PROFILE_LIMITS.name) fields.name = `must be at most ${PROFILE_LIMITS.name} characters`;
  if (!(PROVIDERS as readonly string[]).includes(input.provider)) fields.provider = `must be one of ${PROVIDERS.join(', ')}`;
  const baseUrlProblem = checkUrl(input.baseUrl);
  if (baseUrlProblem) fields.base_url = baseUrlProblem;
  const model = input.model.trim();
  if (!model) fields.model = 'is required';
  else if (model.length > PROFILE_LIMITS.model) fields.model = `must be at most ${PROFILE_LIMITS.model} characters`;
  if (input.embeddingModel !== null && (!input.embeddingModel.trim() || input.embeddingModel.length > PROFILE_LIMITS.model)) {
    fields.embedding_model = `must be 1 to ${PROFILE_LIMITS.model} characters`;
  }
  if (input.embeddingBaseUrl !== null) {
    const p = checkUrl(input.embeddingBaseUrl);
    if (p) fields.embedding_base_url = p;
  }
  if (typeof input.apiKey === 'string') {
    if (!input.apiKey.trim()) fields.api_key = 'must not be empty (clear it instead)';
    else if (input.apiKey.length > PROFILE_LIMITS.apiKey) fields.api_key = `must be at most ${PROFILE_LIMITS.apiKey} characters`;
    // eslint-disable-next-line no-control-regex
    else if (/[\s\u0000-\u001f\u007f]/.test(input.apiKey)) fields.api_key = 'must not contain whitespace or control characters';
  }
  const willHaveKey = typeof input.apiKey === 'string' || (input.apiKey === undefined && hasStoredKey);
  if (!willHaveKey && KEY_REQUIRED.has(input.provider) && !fields.api_key) fields.api_key = `is required for provider ${input.provider}`;
  checkInt(fields, 'limits.max_concurrent_generations', input.limits.max_concurrent_generations, 1, 10_000);
  checkInt(fields, 'limits.requests_per_minute', input.limits.requests_per_minute, 1, 1_000_000);
  if (Object.keys(fields).length > 0) throw AppError.invalid('the API profile is not valid', fields);
  return { ...input, name, model };
}

/** The fields UpdateApiProfile may remove (clear_fields). */
export const CLEARABLE_PROFILE_FIELDS = ['api_key', 'embedding_model', 'embedding_base_url', 'limits', 'limits.max_concurrent_generations', 'limits.requests_per_minute'] as const;

/** ApiProfilePatch is a partial update: undefined keeps a field, clear lists fields to remove. */
export interface ApiProfilePatch {
  name?: string;
  provider?: string;
  baseUrl?: string;
  model?: string;
  apiKey?: string;
  embeddingModel?: string;
  embeddingBaseUrl?: string;
  limits?: ApiProfileLimits;
  clear?: readonly string[];
}

/** applyProfilePatch merges a patch into a stored profile and validates the result like a new one. */
export function applyProfilePatch(existing: ApiProfile, patch: ApiProfilePatch): ApiProfileInput {
  const clear = new Set(patch.clear ?? []);
  const unknown = [...clear].filter((f) => !(CLEARABLE_PROFILE_FIELDS as readonly string[]).includes(f));
  if (unknown.length) throw AppError.invalid('clear_fields names fields that cannot be cleared', Object.fromEntries(unknown.map((f) => [f, 'cannot be cleared'])));
  const both: Record<string, string> = {};
  if (clear.has('api_key') && patch.apiKey !== undefined) both.api_key = 'is both set and cleared';
  if (clear.has('embedding_model') && patch.embeddingModel !== undefined) both.embedding_model = 'is both set and cleared';
  if (clear.has('embedding_base_url') && patch.embeddingBaseUrl !== undefined) both.embedding_base_url = 'is both set and cleared';
  if (Object.keys(both).length) throw AppError.invalid('a field is both set and cleared', both);

  const limits: ApiProfileLimits = clear.has('limits') ? {} : { ...existing.limits };
  if (clear.has('limits.max_concurrent_generations')) delete limits.max_concurrent_generations;
  if (clear.has('limits.requests_per_minute')) delete limits.requests_per_minute;
  if (patch.limits?.max_concurrent_generations !== undefined) limits.max_concurrent_generations = patch.limits.max_concurrent_generations;
  if (patch.limits?.requests_per_minute !== undefined) limits.requests_per_minute = patch.limits.requests_per_minute;

  return validateApiProfile(
    {
      ownerId: existing.ownerId,
      name: patch.name ?? existing.name,
      provider: patch.provider ?? existing.provider,
      baseUrl: patch.baseUrl ?? existing.baseUrl,
      model: patch.model ?? existing.model,
      embeddingModel: clear.has('embedding_model') ? null : (patch.embeddingModel ?? existing.embeddingModel),
      embeddingBaseUrl: clear.has('embedding_base_url') ? null : (patch.embeddingBaseUrl ?? existing.embeddingBaseUrl),
      limits,
      apiKey: clear.has('api_key') ? null : patch.apiKey,
    },
    existing.apiKey !== null,
  );
}
