export { backoffMs, Topics, type EventBus, type EventRecord, type OutgoingEvent, type SubscribeOptions, type Subscription, type TopicSpec } from './bus.js';
export { encodeEvent, traceHeaders, type Codec } from './codec.js';
export { InProcessBus } from './in-process.js';
export { KafkaBus, type KafkaBusOptions } from './kafka.js';
