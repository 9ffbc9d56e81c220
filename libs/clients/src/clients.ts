import { personaV1, ragV1, schedulerV1, sessionV1 } from '@chat/contracts';
import { getClient, serverStream, unary } from '@chat/grpc';

/** Default deadline of unary calls between services. */
const DEADLINE_MS = 10_000;

/** PersonaClient calls chat.persona.v1.PersonaService with deadlines over a shared channel. */
export class PersonaClient {
  private readonly c: personaV1.PersonaServiceClient;
  constructor(address: string) {
    this.c = getClient(personaV1.PersonaServiceClient, address);
  }
  createPersona(req: personaV1.DeepPartial<personaV1.CreatePersonaRequest>) {
    return unary('persona service', this.c.createPersona.bind(this.c), personaV1.CreatePersonaRequest.fromPartial(req), DEADLINE_MS);
  }
  getPersona(req: personaV1.DeepPartial<personaV1.GetPersonaRequest>) {
    return unary('persona service', this.c.getPersona.bind(this.c), personaV1.GetPersonaRequest.fromPartial(req), DEADLINE_MS);
  }
  listPersonas(req: personaV1.DeepPartial<personaV1.ListPersonasRequest>) {
    return unary('persona service', this.c.listPersonas.bind(this.c), personaV1.ListPersonasRequest.fromPartial(req), DEADLINE_MS);
  }
  updatePersona(req: personaV1.DeepPartial<personaV1.UpdatePersonaRequest>) {
    return unary('persona service', this.c.updatePersona.bind(this.c), personaV1.UpdatePersonaRequest.fromPartial(req), DEADLINE_MS);
  }
  deletePersona(req: personaV1.DeepPartial<personaV1.DeletePersonaRequest>) {
    return unary('persona service', this.c.deletePersona.bind(this.c), personaV1.DeletePersonaRequest.fromPartial(req), DEADLINE_MS);
  }
  createApiProfile(req: personaV1.DeepPartial<personaV1.CreateApiProfileRequest>) {
    return unary('persona service', this.c.createApiProfile.bind(this.c), personaV1.CreateApiProfileRequest.fromPartial(req), DEADLINE_MS);
  }
  getApiProfile(req: personaV1.DeepPartial<personaV1.GetApiProfileRequest>) {
    return unary('persona service', this.c.getApiProfile.bind(this.c), personaV1.GetApiProfileRequest.fromPartial(req), DEADLINE_MS);
  }
  listApiProfiles(req: personaV1.DeepPartial<personaV1.ListApiProfilesRequest>) {
    return unary('persona service', this.c.listApiProfiles.bind(this.c), personaV1.ListApiProfilesRequest.fromPartial(req), DEADLINE_MS);
  }
  updateApiProfile(req: personaV1.DeepPartial<personaV1.UpdateApiProfileRequest>) {
    return unary('persona service', this.c.updateApiProfile.bind(this.c), personaV1.UpdateApiProfileRequest.fromPartial(req), DEADLINE_MS);
  }
  deleteApiProfile(req: personaV1.DeepPartial<personaV1.DeleteApiProfileRequest>) {
    return unary('persona service', this.c.deleteApiProfile.bind(this.c), personaV1.DeleteApiProfileRequest.fromPartial(req), DEADLINE_MS);
  }
  /** resolvePersona is internal: the persona, effective settings and its profile with the key sealed. */
  resolvePersona(req: personaV1.DeepPartial<personaV1.ResolvePersonaRequest>) {
    return unary('persona service', this.c.resolvePersona.bind(this.c), personaV1.ResolvePersonaRequest.fromPartial(req), DEADLINE_MS);
  }
}

/** SessionClient calls chat.session.v1.SessionService. */
export class SessionClient {
  private readonly c: sessionV1.SessionServiceClient;
  constructor(address: string) {
    this.c = getClient(sessionV1.SessionServiceClient, address);
  }
  createSession(req: sessionV1.DeepPartial<sessionV1.CreateSessionRequest>) {
    return unary('session service', this.c.createSession.bind(this.c), sessionV1.CreateSessionRequest.fromPartial(req), DEADLINE_MS);
  }
  getSession(req: sessionV1.DeepPartial<sessionV1.GetSessionRequest>) {
    return unary('session service', this.c.getSession.bind(this.c), sessionV1.GetSessionRequest.fromPartial(req), DEADLINE_MS);
  }
  listMessages(req: sessionV1.DeepPartial<sessionV1.ListMessagesRequest>) {
    return unary('session service', this.c.listMessages.bind(this.c), sessionV1.ListMessagesRequest.fromPartial(req), DEADLINE_MS);
  }
  sendMessage(req: sessionV1.DeepPartial<sessionV1.SendMessageRequest>) {
    return unary('session service', this.c.sendMessage.bind(this.c), sessionV1.SendMessageRequest.fromPartial(req), DEADLINE_MS);
  }
  listSessions(req: sessionV1.DeepPartial<sessionV1.ListSessionsRequest>) {
    return unary('session service', this.c.listSessions.bind(this.c), sessionV1.ListSessionsRequest.fromPartial(req), DEADLINE_MS);
  }
  deleteSession(req: sessionV1.DeepPartial<sessionV1.DeleteSessionRequest>) {
    return unary('session service', this.c.deleteSession.bind(this.c), sessionV1.DeleteSessionRequest.fromPartial(req), DEADLINE_MS);
  }
  getConversationWindow(req: sessionV1.DeepPartial<sessionV1.GetConversationWindowRequest>) {
    return unary('session service', this.c.getConversationWindow.bind(this.c), sessionV1.GetConversationWindowRequest.fromPartial(req), DEADLINE_MS);
  }
  listMessagesAfter(req: sessionV1.DeepPartial<sessionV1.ListMessagesAfterRequest>) {
    return unary('session service', this.c.listMessagesAfter.bind(this.c), sessionV1.ListMessagesAfterRequest.fromPartial(req), DEADLINE_MS);
  }
  updateSummary(req: sessionV1.DeepPartial<sessionV1.UpdateSummaryRequest>) {
    return unary('session service', this.c.updateSummary.bind(this.c), sessionV1.UpdateSummaryRequest.fromPartial(req), DEADLINE_MS);
  }
  listReplyEvents(req: sessionV1.DeepPartial<sessionV1.ListReplyEventsRequest>) {
    return unary('session service', this.c.listReplyEvents.bind(this.c), sessionV1.ListReplyEventsRequest.fromPartial(req), DEADLINE_MS);
  }
}

/** RagClient calls chat.rag.v1.RagService. */
export class RagClient {
  private readonly c: ragV1.RagServiceClient;
  constructor(address: string) {
    this.c = getClient(ragV1.RagServiceClient, address);
  }
  ingestText(req: ragV1.DeepPartial<ragV1.IngestTextRequest>) {
    return unary('rag service', this.c.ingestText.bind(this.c), ragV1.IngestTextRequest.fromPartial(req), DEADLINE_MS);
  }
  ingestUrl(req: ragV1.DeepPartial<ragV1.IngestUrlRequest>) {
    return unary('rag service', this.c.ingestUrl.bind(this.c), ragV1.IngestUrlRequest.fromPartial(req), DEADLINE_MS);
  }
  getIngestJob(req: ragV1.DeepPartial<ragV1.GetIngestJobRequest>) {
    return unary('rag service', this.c.getIngestJob.bind(this.c), ragV1.GetIngestJobRequest.fromPartial(req), DEADLINE_MS);
  }
  retrieveDocuments(req: ragV1.DeepPartial<ragV1.RetrieveDocumentsRequest>) {
    return unary('rag service', this.c.retrieveDocuments.bind(this.c), ragV1.RetrieveDocumentsRequest.fromPartial(req), DEADLINE_MS);
  }
  /** generate streams a reply; the whole stream must finish within deadlineMs. */
  generate(req: ragV1.DeepPartial<ragV1.GenerateRequest>, options: { deadlineMs?: number; signal?: AbortSignal } = {}) {
    return serverStream('rag service', this.c.generate.bind(this.c), ragV1.GenerateRequest.fromPartial(req), options);
  }
  /** summarize folds turns into a summary; it may take as long as a reply (deadlineMs). */
  summarize(req: ragV1.DeepPartial<ragV1.SummarizeRequest>, deadlineMs = 120_000) {
    return unary('rag service', this.c.summarize.bind(this.c), ragV1.SummarizeRequest.fromPartial(req), deadlineMs);
  }
  getKnowledge(req: ragV1.DeepPartial<ragV1.GetKnowledgeRequest>) {
    return unary('rag service', this.c.getKnowledge.bind(this.c), ragV1.GetKnowledgeRequest.fromPartial(req), DEADLINE_MS);
  }
  /** deleteKnowledgeSource waits for the persona's queued ingestion work first, so it may take longer. */
  deleteKnowledgeSource(req: ragV1.DeepPartial<ragV1.DeleteKnowledgeSourceRequest>, deadlineMs = 60_000) {
    return unary('rag service', this.c.deleteKnowledgeSource.bind(this.c), ragV1.DeleteKnowledgeSourceRequest.fromPartial(req), deadlineMs);
  }
  /** purgeKnowledge waits for the persona's queued ingestion work first, so it may take longer. */
  purgeKnowledge(req: ragV1.DeepPartial<ragV1.PurgeKnowledgeRequest>, deadlineMs = 60_000) {
    return unary('rag service', this.c.purgeKnowledge.bind(this.c), ragV1.PurgeKnowledgeRequest.fromPartial(req), deadlineMs);
  }
  reembedKnowledge(req: ragV1.DeepPartial<ragV1.ReembedKnowledgeRequest>) {
    return unary('rag service', this.c.reembedKnowledge.bind(this.c), ragV1.ReembedKnowledgeRequest.fromPartial(req), DEADLINE_MS);
  }
}

/** SchedulerClient calls chat.scheduler.v1.SchedulerService. */
export class SchedulerClient {
  private readonly c: schedulerV1.SchedulerServiceClient;
  constructor(address: string) {
    this.c = getClient(schedulerV1.SchedulerServiceClient, address);
  }
  getStats() {
    return unary('scheduler service', this.c.getStats.bind(this.c), schedulerV1.GetStatsRequest.fromPartial({}), DEADLINE_MS);
  }
  cancelReply(req: schedulerV1.DeepPartial<schedulerV1.CancelReplyRequest>) {
    return unary('scheduler service', this.c.cancelReply.bind(this.c), schedulerV1.CancelReplyRequest.fromPartial(req), DEADLINE_MS);
  }
  /** listDeadLetters is admin-only (the gateway checks ADMIN_OWNERS). */
  listDeadLetters(req: schedulerV1.DeepPartial<schedulerV1.ListDeadLettersRequest>) {
    return unary('scheduler service', this.c.listDeadLetters.bind(this.c), schedulerV1.ListDeadLettersRequest.fromPartial(req), DEADLINE_MS);
  }
  /** replayDeadLetter is admin-only (the gateway checks ADMIN_OWNERS). */
  replayDeadLetter(req: schedulerV1.DeepPartial<schedulerV1.ReplayDeadLetterRequest>) {
    return unary('scheduler service', this.c.replayDeadLetter.bind(this.c), schedulerV1.ReplayDeadLetterRequest.fromPartial(req), DEADLINE_MS);
  }
}
