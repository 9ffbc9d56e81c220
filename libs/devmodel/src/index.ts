export type { LlmEndpoint } from './endpoint.js';
export { DEV_MODEL_API_KEY, DEV_MODEL_ID, startDevModel, type DevModel, type DevModelOptions } from './server.js';
export { DEV_LABEL, devReply, extractPassages, type QuotedPassage, type WireMessage } from './reply.js';
