import { AppError } from '@chat/errors';

/** intParam reads a whole number from a query string value (already matched as digits) and checks its range. */
export function intParam(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw AppError.invalid(`invalid request query: ${name} must be ${min}..${max}`, { [name]: `must be ${min}..${max}` });
  return n;
}
