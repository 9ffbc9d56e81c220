// protoc-gen-es output, for the Connect endpoint of the gateway.
export * as personaV1 from './generated/es/chat/persona/v1/persona_pb.js';
export * as sessionV1 from './generated/es/chat/session/v1/session_pb.js';
export * as schedulerV1 from './generated/es/chat/scheduler/v1/scheduler_pb.js';
export * as ragV1 from './generated/es/chat/rag/v1/rag_pb.js';
export * as eventsV1 from './generated/es/chat/events/v1/events_pb.js';
export * as apiV1 from './generated/es/chat/api/v1/api_pb.js';
