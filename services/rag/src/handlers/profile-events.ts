import { PermanentError } from '@chat/events';
import { eventsV1 } from '@chat/contracts';
import type { EventRecord } from '@chat/events';
import type { Logger } from '@chat/logger';

/**
 * profileEventHandler drops cached resolutions of a profile when it changes, is deleted or its key
 * is re-sealed (ApiProfileChanged), so the next reply resolves it again.
 */
export function profileEventHandler(invalidateProfile: (profileId: string) => void, logger: Logger): (record: EventRecord) => Promise<void> {
  return async (record) => {
    let event: eventsV1.ApiProfileChanged;
    try {
      event = eventsV1.ApiProfileChanged.decode(record.value);
    } catch (err) {
      // Straight to the dead-letter topic: retrying cannot make it decode.
      throw new PermanentError(`undecodable profile event: ${(err as Error).message}`, { reason: 'undecodable', cause: err });
    }
    const profileId = event.profileId || record.key;
    if (!profileId) {
      logger.warn('skipping a profile event without a profile id');
      return;
    }
    invalidateProfile(profileId);
    logger.debug('api profile cache invalidated', { api_profile_id: profileId, deleted: event.deleted });
  };
}
