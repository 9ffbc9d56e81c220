import type { SubscribeOptions } from './bus.js';

/**
 * claimGroup refuses a consumer group that another subscription of this process uses for other
 * topics. Kafka assigns a group's partitions across all its members whatever each subscribed to,
 * so such a member would be handed partitions of a topic it does not read and those events would
 * never be handled. One group per (service, purpose), e.g. `session.replies`.
 */
export function claimGroup(groups: Map<string, string>, options: SubscribeOptions): void {
  const topics = [...options.topics].sort().join(',');
  const claimed = groups.get(options.groupId);
  if (claimed !== undefined && claimed !== topics) {
    throw new Error(`consumer group ${options.groupId} already reads ${claimed}; use another group for ${topics}`);
  }
  groups.set(options.groupId, topics);
}
