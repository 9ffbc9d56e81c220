import { QueryTypes, type Sequelize } from '@chat/db';
import type { Logger } from '@chat/logger';

/** Most ephemeral sessions one sweep statement deletes (the sweep repeats until fewer are left). */
const BATCH = 500;
/** Most statements per sweep run, so one run is bounded. */
const MAX_BATCHES = 100;

/**
 * deleteEphemeralSessions deletes ephemeral sessions (made for one OpenAI-compatible completion)
 * created before `before`, with their messages, summaries and reply events (cascade). Returns how
 * many went. Ordinary sessions are never touched.
 */
export async function deleteEphemeralSessions(sequelize: Sequelize, before: Date): Promise<number> {
  let total = 0;
  for (let i = 0; i < MAX_BATCHES; i++) {
    const rows = await sequelize.query(
      `delete from session.sessions where id in (
         select id from session.sessions where ephemeral and created_at < :before order by created_at limit ${BATCH}
       ) returning id`,
      { replacements: { before }, type: QueryTypes.SELECT },
    );
    total += rows.length;
    if (rows.length < BATCH) break;
  }
  return total;
}

/**
 * startEphemeralSessionSweep deletes ephemeral sessions older than `retentionHours`, once at start
 * and then every 10 minutes (or every retention period when shorter). Returns the timer; clear it
 * at stop. docs/decisions/0019.
 */
export function startEphemeralSessionSweep(sequelize: Sequelize, retentionHours: number, logger: Logger): NodeJS.Timeout {
  const retentionMs = retentionHours * 3_600_000;
  const sweep = async () => {
    try {
      const removed = await deleteEphemeralSessions(sequelize, new Date(Date.now() - retentionMs));
      if (removed > 0) logger.info('ephemeral sessions removed', { sessions: removed, retention_hours: retentionHours });
    } catch (err) {
      logger.warn('ephemeral session sweep failed', { err });
    }
  };
  const timer = setInterval(() => void sweep(), Math.min(retentionMs, 600_000));
  timer.unref();
  void sweep();
  return timer;
}
