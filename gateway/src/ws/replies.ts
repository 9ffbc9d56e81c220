import { eventsV1 } from '@chat/contracts';
import { instanceGroupId, Topics, type EventBus, type Subscription } from '@chat/events';
import type { Logger } from '@chat/logger';
import type { SocketHub } from './hub.js';

/** replyGroupId is unique per gateway instance, so every gateway sees every reply event. */
export function replyGroupId(): string {
  return instanceGroupId('gateway');
}

/** subscribeReplies feeds every reply event of the bus to the hub (fan-out to that session's sockets). */
export function subscribeReplies(bus: EventBus, hub: SocketHub, logger: Logger, groupId = replyGroupId()): Promise<Subscription> {
  return bus.subscribe({
    topics: [Topics.replies],
    groupId,
    // A fresh group per instance: start at the end, never replay the whole reply log at start.
    fromBeginning: false,
    // …and delete it at stop, so every restart does not leave a group behind (docs/decisions/0019).
    ephemeral: true,
    handler: async (record) => {
      let event: eventsV1.ReplyEvent;
      try {
        event = eventsV1.ReplyEvent.decode(record.value);
      } catch (err) {
        // Redelivery cannot fix a malformed event: log it and move on.
        logger.warn('undecodable reply event skipped', { key: record.key, err });
        return;
      }
      hub.publish(event);
    },
  });
}
