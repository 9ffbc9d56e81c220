import { eventsV1 } from '@chat/contracts';
import { decodeEvent, type EventRecord } from '@chat/events';
import type { Logger } from '@chat/logger';

/**
 * profileEventHandler drops cached resolutions of a profile when it changes, is deleted or its key
 * is re-sealed (ApiProfileChanged), so the next reply resolves it again.
 */
export function profileEventHandler(invalidateProfile: (profileId: string) => void, logger: Logger): (record: EventRecord) => Promise<void> {
  return async (record) => {
    const event = decodeEvent(eventsV1.ApiProfileChanged, record, 'profile');
    const profileId = event.profileId || record.key;
    if (!profileId) {
      logger.warn('skipping a profile event without a profile id');
      return;
    }
    invalidateProfile(profileId);
    logger.debug('api profile cache invalidated', { api_profile_id: profileId, deleted: event.deleted });
  };
}
