import { eventsV1 } from '@chat/contracts';
import { Code, isAppError } from '@chat/errors';
import { decodeEvent, type EventRecord } from '@chat/events';
import type { Logger } from '@chat/logger';
import type { IngestService } from '../domain/ingest.js';

/**
 * personaEventHandler turns persona events into knowledge changes: an upsert (re)ingests the
 * background, a delete removes the persona's knowledge; both drop the persona's cached profile
 * resolution (onPersonaChanged). Redelivered events change nothing.
 */
export function personaEventHandler(ingest: IngestService, logger: Logger, onPersonaChanged?: (personaId: string) => void): (record: EventRecord) => Promise<void> {
  return async (record) => {
    const event = decodeEvent(eventsV1.PersonaEvent, record, 'persona');
    const personaId = event.personaId || record.key;
    const kind = event.kind;
    if (!kind) return;
    if (!personaId) {
      logger.warn('skipping a persona event without a persona id');
      return;
    }
    // The persona may now name another profile (or be gone): its cached resolution is stale.
    onPersonaChanged?.(personaId);
    try {
      if (kind.$case === 'upserted') {
        const outcome = await ingest.syncBackground({ ownerId: event.ownerId, personaId, name: kind.value.name, background: kind.value.background });
        logger.debug('persona background synced', { persona_id: personaId, outcome });
      } else if (kind.$case === 'deleted') {
        await ingest.deletePersona(personaId);
        logger.info('persona knowledge removed', { persona_id: personaId });
      }
    } catch (err) {
      // Invalid events would fail forever: log and skip them; everything else is retried by the bus.
      if (isAppError(err) && err.code === Code.InvalidArgument) {
        logger.warn('skipping an invalid persona event', { persona_id: personaId, err });
        return;
      }
      throw err;
    }
  };
}
