import { AppError } from '@chat/errors';

/** intParam reads a whole number from a query string value (already matched as digits) and checks its range. */
export function intParam(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min || n > max) throw AppError.invalid(`invalid request query: ${name} must be ${min}..${max}`, { [name]: `must be ${min}..${max}` });
  return n;
}

/** setOwner records the authenticated owner of a request (the /api auth hook calls it). */
export function setOwner(req: object, owner: string): void {
  (req as { ownerId?: string }).ownerId = owner;
}

/** ownerOf is the authenticated owner of an /api request. */
export function ownerOf(req: object): string {
  const owner = (req as { ownerId?: string }).ownerId;
  if (!owner) throw AppError.unauthenticated();
  return owner;
}

/** setKeyId records which API key authenticated a request (rate limits are per key). */
export function setKeyId(req: object, keyId: string): void {
  (req as { apiKeyId?: string }).apiKeyId = keyId;
}
