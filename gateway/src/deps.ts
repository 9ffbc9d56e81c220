import type { personaV1, ragV1, schedulerV1, sessionV1 } from '@chat/contracts';
import type { Logger } from '@chat/logger';
import type { FastifyInstance } from 'fastify';
import type { ApiKeyAuth, WsTokens } from './auth.js';
import type { GatewayLimits } from './limits.js';

/*
 * The slices of the service clients the gateway calls. The real clients of @chat/clients satisfy
 * them structurally; tests pass in-memory fakes. Failures are AppError (NOT_FOUND for foreign ids).
 */

export interface PersonaApi {
  createPersona(req: personaV1.DeepPartial<personaV1.CreatePersonaRequest>): Promise<personaV1.CreatePersonaResponse>;
  getPersona(req: personaV1.DeepPartial<personaV1.GetPersonaRequest>): Promise<personaV1.GetPersonaResponse>;
  listPersonas(req: personaV1.DeepPartial<personaV1.ListPersonasRequest>): Promise<personaV1.ListPersonasResponse>;
  updatePersona(req: personaV1.DeepPartial<personaV1.UpdatePersonaRequest>): Promise<personaV1.UpdatePersonaResponse>;
  deletePersona(req: personaV1.DeepPartial<personaV1.DeletePersonaRequest>): Promise<personaV1.DeletePersonaResponse>;
  createApiProfile(req: personaV1.DeepPartial<personaV1.CreateApiProfileRequest>): Promise<personaV1.CreateApiProfileResponse>;
  getApiProfile(req: personaV1.DeepPartial<personaV1.GetApiProfileRequest>): Promise<personaV1.GetApiProfileResponse>;
  listApiProfiles(req: personaV1.DeepPartial<personaV1.ListApiProfilesRequest>): Promise<personaV1.ListApiProfilesResponse>;
  updateApiProfile(req: personaV1.DeepPartial<personaV1.UpdateApiProfileRequest>): Promise<personaV1.UpdateApiProfileResponse>;
  deleteApiProfile(req: personaV1.DeepPartial<personaV1.DeleteApiProfileRequest>): Promise<personaV1.DeleteApiProfileResponse>;
}

export interface SessionApi {
  createSession(req: sessionV1.DeepPartial<sessionV1.CreateSessionRequest>): Promise<sessionV1.CreateSessionResponse>;
  getSession(req: sessionV1.DeepPartial<sessionV1.GetSessionRequest>): Promise<sessionV1.GetSessionResponse>;
  listMessages(req: sessionV1.DeepPartial<sessionV1.ListMessagesRequest>): Promise<sessionV1.ListMessagesResponse>;
  sendMessage(req: sessionV1.DeepPartial<sessionV1.SendMessageRequest>): Promise<sessionV1.SendMessageResponse>;
  listSessions(req: sessionV1.DeepPartial<sessionV1.ListSessionsRequest>): Promise<sessionV1.ListSessionsResponse>;
  deleteSession(req: sessionV1.DeepPartial<sessionV1.DeleteSessionRequest>): Promise<sessionV1.DeleteSessionResponse>;
  /** The stored reply events after a seq (WebSocket/Connect resume beyond the local buffer); optional for fakes. */
  listReplyEvents?(req: sessionV1.DeepPartial<sessionV1.ListReplyEventsRequest>): Promise<sessionV1.ListReplyEventsResponse>;
}

export interface RagApi {
  ingestText(req: ragV1.DeepPartial<ragV1.IngestTextRequest>): Promise<ragV1.IngestTextResponse>;
  ingestUrl(req: ragV1.DeepPartial<ragV1.IngestUrlRequest>): Promise<ragV1.IngestUrlResponse>;
  getIngestJob(req: ragV1.DeepPartial<ragV1.GetIngestJobRequest>): Promise<ragV1.GetIngestJobResponse>;
  retrieveDocuments(req: ragV1.DeepPartial<ragV1.RetrieveDocumentsRequest>): Promise<ragV1.RetrieveDocumentsResponse>;
  getKnowledge(req: ragV1.DeepPartial<ragV1.GetKnowledgeRequest>): Promise<ragV1.GetKnowledgeResponse>;
  deleteKnowledgeSource(req: ragV1.DeepPartial<ragV1.DeleteKnowledgeSourceRequest>): Promise<ragV1.DeleteKnowledgeSourceResponse>;
  purgeKnowledge(req: ragV1.DeepPartial<ragV1.PurgeKnowledgeRequest>): Promise<ragV1.PurgeKnowledgeResponse>;
  reembedKnowledge(req: ragV1.DeepPartial<ragV1.ReembedKnowledgeRequest>): Promise<ragV1.ReembedKnowledgeResponse>;
}

export interface SchedulerApi {
  cancelReply(req: schedulerV1.DeepPartial<schedulerV1.CancelReplyRequest>): Promise<schedulerV1.CancelReplyResponse>;
  /** Admin only (the gateway checks GatewayDeps.adminOwners): the dead letters of every owner. */
  listDeadLetters(req: schedulerV1.DeepPartial<schedulerV1.ListDeadLettersRequest>): Promise<schedulerV1.ListDeadLettersResponse>;
  /** Admin only: republishes a dead letter to its original topic, once. */
  replayDeadLetter(req: schedulerV1.DeepPartial<schedulerV1.ReplayDeadLetterRequest>): Promise<schedulerV1.ReplayDeadLetterResponse>;
}

/** GatewayDeps is everything buildApp needs; all of it can be faked. */
export interface GatewayDeps {
  persona: PersonaApi;
  session: SessionApi;
  rag: RagApi;
  scheduler: SchedulerApi;
  auth: ApiKeyAuth;
  tokens: WsTokens;
  logger: Logger;
  /** Largest request body in bytes (default 1 MiB). */
  maxBodyBytes?: number;
  /** WebSocket heartbeat period (default 30 s); a socket that misses one pong is terminated. */
  heartbeatMs?: number;
  /** bufferedAmount above which a slow WebSocket is closed with 1013 (default 1 MiB). */
  maxBufferedBytes?: number;
  /** Rate limits and the per-owner stream cap (default: GatewayLimits' defaults). */
  limits?: GatewayLimits;
  /** Origins allowed to open WebSockets (lower case; `*` = any). Unset: any. No Origin header: always allowed. */
  allowedOrigins?: readonly string[];
  /** Owners allowed to use /api/admin (ADMIN_OWNERS). Unset or empty: nobody. */
  adminOwners?: readonly string[];
  /**
   * Called with the app after every route is declared and before it is ready: tests use it to add
   * hooks (e.g. the check of every response against the OpenAPI document, see test/harness.ts).
   */
  decorate?: (app: FastifyInstance) => void;
}
