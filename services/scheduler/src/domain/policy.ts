/**
 * The priority policy across sessions (docs/decisions/0008-priorities-and-fairness.md): among the
 * sessions whose next message may start, the one with the highest effective priority runs first,
 * where effective priority = the message's priority (-10..10) + the time it has waited / agingMs.
 * A waiting message gains one level per agingMs, so a low-priority message is delayed while
 * higher ones keep arriving, but never starved: after (20 × agingMs) it outranks any fresh one.
 * Ties go to the message that arrived first.
 */

/** Candidate is the head message of one session, ready to start. */
export interface Candidate {
  priority: number;
  /** When the scheduler received the message (ms). */
  enqueuedAt: number;
  /** Arrival order (tie-break among equal scores and times). */
  order: number;
}

/** effectivePriority is the priority a waiting message has at `now`. */
export function effectivePriority(c: Candidate, now: number, agingMs: number): number {
  return c.priority + Math.max(0, now - c.enqueuedAt) / agingMs;
}

/** pickNext returns the index of the candidate to run next, or -1 for none. */
export function pickNext(candidates: readonly Candidate[], now: number, agingMs: number): number {
  let best = -1;
  let bestScore = -Infinity;
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i]!;
    const score = effectivePriority(c, now, agingMs);
    const b = best >= 0 ? candidates[best]! : undefined;
    if (score > bestScore || (score === bestScore && b && (c.enqueuedAt < b.enqueuedAt || (c.enqueuedAt === b.enqueuedAt && c.order < b.order)))) {
      best = i;
      bestScore = score;
    }
  }
  return best;
}

/** clampPriority keeps a message's priority in -10..10 (the API's range). */
export function clampPriority(p: number): number {
  return Number.isFinite(p) ? Math.max(-10, Math.min(10, Math.trunc(p))) : 0;
}
