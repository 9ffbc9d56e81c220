import { eventsV1 } from '@chat/contracts';
import { decodeEvent, instanceGroupId, Topics, type EventRecord } from '@chat/events';
import type { Logger } from '@chat/logger';
import { profileEventHandler } from './profile-events.js';

/**
 * cacheGroupId is unique per rag process: with a group of its own every replica receives every
 * persona and profile event, so every replica's caches are invalidated (a shared group gives each
 * event to one replica only). docs/decisions/0022.
 */
export function cacheGroupId(): string {
  return instanceGroupId('rag.caches');
}

/** CacheInvalidation is what one replica does when a persona or a profile changed. */
export interface CacheInvalidation {
  /** A persona was upserted or deleted. */
  persona(personaId: string): void;
  /** An API profile changed, was deleted or its key re-sealed. */
  profile(profileId: string): void;
}

/**
 * cacheEventHandler handles the per-process subscription to persona and profile events: it only
 * drops cached state (and starts what depends on it, see server.ts), never writes knowledge, so it
 * may run on every replica. Ingesting a persona's background stays with the shared group `rag`.
 */
export function cacheEventHandler(invalidate: CacheInvalidation, logger: Logger): (record: EventRecord) => Promise<void> {
  const onProfile = profileEventHandler((id) => invalidate.profile(id), logger);
  return async (record) => {
    if (record.topic === Topics.personaEvents) {
      const event = decodeEvent(eventsV1.PersonaEvent, record, 'persona');
      const personaId = event.personaId || record.key;
      if (!personaId) {
        logger.warn('skipping a persona event without a persona id');
        return;
      }
      invalidate.persona(personaId);
      return;
    }
    if (record.topic === Topics.profileEvents) await onProfile(record);
  };
}
