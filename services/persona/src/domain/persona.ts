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
