import { z } from 'zod';

/** EnvShape maps environment variable names to the schema of their value. */
export type EnvShape = Record<string, z.ZodType>;

/** ConfigSlice is one module's part of the configuration: the variables it reads and their types. */
export interface ConfigSlice<S extends EnvShape> {
  readonly shape: S;
  readonly schema: z.ZodObject<S>;
}

/** ConfigOf is the parsed, typed value of a slice. */
export type ConfigOf<C> = C extends ConfigSlice<infer S> ? z.output<z.ZodObject<S>> : never;

/** defineConfig declares a configuration slice; nothing is read until loadConfig. */
export function defineConfig<S extends EnvShape>(shape: S): ConfigSlice<S> {
  return { shape, schema: z.object(shape) };
}

/** ConfigError names every variable that is missing or wrong; the launcher exits with it. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(readonly problems: Array<{ variable: string; problem: string }>) {
    super(`invalid configuration: ${problems.map((p) => `${p.variable}: ${p.problem}`).join('; ')}`);
  }
}

/** Env is the source of variables: process.env or a test's object. */
export type Env = Record<string, string | undefined>;

/** cleanEnv treats empty strings as unset, so `FOO=` behaves like no FOO. */
function cleanEnv(env: Env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && v.trim() !== '') out[k] = v.trim();
  return out;
}

/** loadConfig validates the given slices against env once, failing with every problem at once. */
export function loadConfig<C extends ConfigSlice<EnvShape>>(slices: readonly C[], env: Env = process.env): Map<C, ConfigOf<C>> {
  const clean = cleanEnv(env);
  const problems: Array<{ variable: string; problem: string }> = [];
  const out = new Map<C, ConfigOf<C>>();
  for (const slice of slices) {
    const picked: Record<string, string> = {};
    for (const key of Object.keys(slice.shape)) if (clean[key] !== undefined) picked[key] = clean[key];
    const result = slice.schema.safeParse(picked);
    if (result.success) {
      out.set(slice, result.data as ConfigOf<C>);
    } else {
      for (const issue of result.error.issues) {
        const variable = String(issue.path[0] ?? '?');
        const problem = picked[variable] === undefined ? `is required (${issue.message})` : `${issue.message} (got ${JSON.stringify(mask(variable, picked[variable]))})`;
        if (!problems.some((p) => p.variable === variable)) problems.push({ variable, problem });
      }
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}

/** mask hides values of secret variables in error messages. */
function mask(variable: string, value: string | undefined): string | undefined {
  return /(KEY|SECRET|PASSWORD|TOKEN)/i.test(variable) && value ? '***' : value;
}

/** Reusable value types for environment variables. */
export const env = {
  /** A TCP port number. */
  port: () => z.coerce.number({ message: 'must be a port number' }).int('must be a whole number').min(0, 'must be 0..65535').max(65535, 'must be 0..65535'),
  /** A positive whole number. */
  positiveInt: () => z.coerce.number({ message: 'must be a number' }).int('must be a whole number').positive('must be greater than 0'),
  /** A duration in milliseconds. */
  millis: () => z.coerce.number({ message: 'must be a number of milliseconds' }).int('must be a whole number').min(1, 'must be at least 1'),
  /** A boolean spelled true/false/1/0/yes/no. */
  bool: () =>
    z
      .string()
      .regex(/^(true|false|1|0|yes|no)$/i, 'must be true or false')
      .transform((v) => /^(true|1|yes)$/i.test(v)),
  /** A host:port address. */
  address: () => z.string().regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port'),
  /** A comma-separated list of host:port addresses. */
  addressList: () =>
    z
      .string()
      .regex(/^(\s*(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}\s*)(,\s*(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}\s*)*$/, 'must be a comma-separated list of host:port')
      .transform((v) => v.split(',').map((s) => s.trim())),
  /** An absolute http(s) URL. */
  url: () => z.string().url('must be a URL').refine((v) => /^https?:\/\//.test(v), 'must be an http or https URL'),
  /** A postgres:// URL. */
  postgresUrl: () => z.string().regex(/^postgres(ql)?:\/\/.+/, 'must be a postgres:// URL'),
  /** A name made of letters, digits, '.', '_' and '-' (e.g. a prefix for topics). */
  identifier: () => z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,100}$/, "must be letters, digits, '.', '_' or '-' (at most 101)"),
  /** One of a fixed set of words. */
  oneOf: <T extends string>(...values: [T, ...T[]]) => z.enum(values, { message: `must be one of ${values.join(', ')}` }),
};
