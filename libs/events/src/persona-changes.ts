import { eventsV1 } from '@chat/contracts';
import type { Logger } from '@chat/logger';
import { subscribeLive, Topics, type EventBus, type Subscription } from './bus.js';

/**
 * subscribePersonaChanges tells this process alone (subscribeLive: a group of its own, from now
 * on) of every persona event, for dropping what it keeps of a persona. The persona id is the
 * event's, else the record's key. An undecodable event is logged and skipped: redelivery cannot
 * fix it, and the caller's TTL bounds what a lost invalidation costs.
 */
export function subscribePersonaChanges(
  bus: EventBus,
  options: { groupPrefix: string; logger: Logger; onEvent: (personaId: string, event: eventsV1.PersonaEvent) => void },
): Promise<Subscription> {
  return subscribeLive(bus, {
    topics: [Topics.personaEvents],
    groupPrefix: options.groupPrefix,
    handler: async (record) => {
      let event: eventsV1.PersonaEvent;
      try {
        event = eventsV1.PersonaEvent.decode(record.value);
      } catch (err) {
        options.logger.warn('undecodable persona event skipped', { key: record.key, err });
        return;
      }
      options.onEvent(event.personaId || record.key, event);
    },
  });
}
