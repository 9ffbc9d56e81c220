// The generated contracts of the mesh, one namespace per proto package. ts-proto output (grpc-js
// services and message codecs) is the default; protoc-gen-es output (for Connect) is under `es`.
import { fileURLToPath } from 'node:url';

export * as personaV1 from './generated/grpc/chat/persona/v1/persona.js';
export * as sessionV1 from './generated/grpc/chat/session/v1/session.js';
export * as schedulerV1 from './generated/grpc/chat/scheduler/v1/scheduler.js';
export * as ragV1 from './generated/grpc/chat/rag/v1/rag.js';
export * as eventsV1 from './generated/grpc/chat/events/v1/events.js';

/** descriptorSetPath is the compiled FileDescriptorSet of every proto, used for server reflection. */
export const descriptorSetPath = fileURLToPath(new URL('../../src/generated/descriptors.binpb', import.meta.url));
