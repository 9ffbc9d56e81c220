import { AppError } from '@chat/errors';

/** RetrievalMode selects dense-only or hybrid retrieval. */
export type RetrievalMode = 'dense' | 'hybrid';

/** PersonaSettings are per-persona generation and retrieval settings; unset means default. */
export interface PersonaSettings {
  temperature?: number;
  max_tokens?: number;
  retrieval?: { top_k?: number; score_threshold?: number; mode?: RetrievalMode; rerank?: boolean; query_rewrite?: boolean };
  history_budget_tokens?: number;
}

/** Persona is a stored persona. */
export interface Persona {
  id: string;
  ownerId: string;
  name: string;
  systemPrompt: string;
  background: string;
  apiProfileId: string | null;
  settings: PersonaSettings;
  createdAt: Date;
  updatedAt: Date;
}

/** NewPersona is what a caller gives to create a persona. */
export interface NewPersona {
  ownerId: string;
  name: string;
  systemPrompt: string;
  background: string;
  apiProfileId: string | null;
  settings: PersonaSettings;
}

/** Limits on persona fields. */
export const PERSONA_LIMITS = {
  name: 200,
  systemPrompt: 20_000,
  background: 200_000,
} as const;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** isUuid tells whether an id has the shape of the ids this service issues. */
export function isUuid(id: string): boolean {
  return UUID.test(id);
}

function checkRange(fields: Record<string, string>, path: string, value: number | undefined, min: number, max: number, integer: boolean): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value < min || value > max || (integer && !Number.isInteger(value))) {
    fields[path] = `must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max}`;
  }
}

/** validateNewPersona checks every field and reports all problems at once, by field. */
export function validateNewPersona(input: NewPersona): NewPersona {
  const fields: Record<string, string> = {};
  if (!input.ownerId) fields.owner_id = 'is required';
  const name = input.name.trim();
  if (!name) fields.name = 'is required';
  else if (name.length > PERSONA_LIMITS.name) fields.name = `must be at most ${PERSONA_LIMITS.name} characters`;
  if (!input.systemPrompt.trim()) fields.system_prompt = 'is required';
  else if (input.systemPrompt.length > PERSONA_LIMITS.systemPrompt) fields.system_prompt = `must be at most ${PERSONA_LIMITS.systemPrompt} characters`;
  if (input.background.length > PERSONA_LIMITS.background) fields.background = `must be at most ${PERSONA_LIMITS.background} characters`;
  if (input.apiProfileId !== null && !isUuid(input.apiProfileId)) fields.api_profile_id = 'must be an API profile id';
  const s = input.settings;
  checkRange(fields, 'settings.temperature', s.temperature, 0, 2, false);
  checkRange(fields, 'settings.max_tokens', s.max_tokens, 1, 32_768, true);
  checkRange(fields, 'settings.history_budget_tokens', s.history_budget_tokens, 256, 1_000_000, true);
  checkRange(fields, 'settings.retrieval.top_k', s.retrieval?.top_k, 1, 50, true);
  checkRange(fields, 'settings.retrieval.score_threshold', s.retrieval?.score_threshold, 0, 1, false);
  if (Object.keys(fields).length > 0) throw AppError.invalid('the persona is not valid', fields);
  return { ...input, name };
}

/** The fields UpdatePersona may reset (clear_fields). */
export const CLEARABLE_PERSONA_FIELDS = [
  'api_profile_id',
  'settings',
  'settings.temperature',
  'settings.max_tokens',
  'settings.history_budget_tokens',
  'settings.retrieval',
  'settings.retrieval.top_k',
  'settings.retrieval.score_threshold',
  'settings.retrieval.mode',
  'settings.retrieval.rerank',
  'settings.retrieval.query_rewrite',
] as const;

/** PersonaPatch is a partial update: undefined keeps a field, clear lists fields to reset. */
export interface PersonaPatch {
  name?: string;
  systemPrompt?: string;
  background?: string;
  apiProfileId?: string;
  /** Merged field by field into the stored settings. */
  settings?: PersonaSettings;
  clear?: readonly string[];
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/**
 * applyPersonaPatch merges a patch into a stored persona and validates the result exactly like a
 * new persona (field errors name the patched fields). A field both set and cleared is an error.
 */
export function applyPersonaPatch(existing: Persona, patch: PersonaPatch): NewPersona {
  const clear = new Set(patch.clear ?? []);
  const unknown = [...clear].filter((f) => !(CLEARABLE_PERSONA_FIELDS as readonly string[]).includes(f));
  if (unknown.length) throw AppError.invalid('clear_fields names fields that cannot be cleared', Object.fromEntries(unknown.map((f) => [f, 'cannot be cleared'])));
  if (clear.has('api_profile_id') && patch.apiProfileId !== undefined) throw AppError.invalid('api_profile_id is both set and cleared', { api_profile_id: 'is both set and cleared' });

  let settings: PersonaSettings = clear.has('settings') ? {} : structuredClone(existing.settings);
  const retrievalBefore = clear.has('settings.retrieval') ? {} : { ...(settings.retrieval ?? {}) };
  for (const f of ['temperature', 'max_tokens', 'history_budget_tokens'] as const) if (clear.has(`settings.${f}`)) delete settings[f];
  for (const f of ['top_k', 'score_threshold', 'mode', 'rerank', 'query_rewrite'] as const) if (clear.has(`settings.retrieval.${f}`)) delete retrievalBefore[f];
  const given = patch.settings ?? {};
  settings = defined({ ...settings, ...defined({ temperature: given.temperature, max_tokens: given.max_tokens, history_budget_tokens: given.history_budget_tokens }) });
  const retrieval = defined({ ...retrievalBefore, ...defined(given.retrieval ?? {}) });
  if (Object.keys(retrieval).length) settings.retrieval = retrieval;
  else delete settings.retrieval;

  return validateNewPersona({
    ownerId: existing.ownerId,
    name: patch.name ?? existing.name,
    systemPrompt: patch.systemPrompt ?? existing.systemPrompt,
    background: patch.background ?? existing.background,
    apiProfileId: clear.has('api_profile_id') ? null : (patch.apiProfileId ?? existing.apiProfileId),
    settings,
  });
}

/** The settings a persona gets for what it leaves unset (the rag service's defaults). */
export const DEFAULT_SETTINGS = {
  temperature: 0.7,
  max_tokens: 1024,
  history_budget_tokens: 8_000,
  retrieval: { top_k: 5, score_threshold: 0, mode: 'dense', rerank: false, query_rewrite: false },
} as const satisfies Required<PersonaSettings>;

/** effectiveSettings fills every unset setting with its default. */
export function effectiveSettings(s: PersonaSettings): Required<PersonaSettings> & { retrieval: Required<NonNullable<PersonaSettings['retrieval']>> } {
  return {
    temperature: s.temperature ?? DEFAULT_SETTINGS.temperature,
    max_tokens: s.max_tokens ?? DEFAULT_SETTINGS.max_tokens,
    history_budget_tokens: s.history_budget_tokens ?? DEFAULT_SETTINGS.history_budget_tokens,
    retrieval: { ...DEFAULT_SETTINGS.retrieval, ...defined(s.retrieval ?? {}) },
  };
}
