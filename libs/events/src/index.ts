export { backoffMs, busStats, instanceGroupId, subscribeLive, Topics, type BusStats, type DeliveryContext, type EventBus, type EventRecord, type OutgoingEvent, type SubscribeOptions, type Subscription, type TopicSpec } from './bus.js';
export { decodeEvent, encodeEvent, traceHeaders, type Codec } from './codec.js';
export { DLT_SUFFIX, DltHeaders, PermanentError, REPLAY_HEADER, deadLetterEvent, dltTopic, isDltTopic, isPermanent } from './dead-letter.js';
export { InProcessBus } from './in-process.js';
export { KafkaBus, type KafkaBusOptions } from './kafka.js';
export { subscribePersonaChanges } from './persona-changes.js';
