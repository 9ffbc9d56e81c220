export type { LlmEndpoint } from './endpoint.js';
export { DEV_MODEL_API_KEY, DEV_MODEL_ID, loremTokens, startDevModel, type DevModel, type DevModelOptions, type ModelFault, type ModelScript, type ModelStats, type ScriptedRequest } from './server.js';
export { DEV_LABEL, devReply, extractPassages, type QuotedPassage, type WireMessage } from './reply.js';
export { DEV_EMBEDDING_MODEL, devEmbed, embeddingsResponse, type EmbeddingScript } from './embeddings.js';
