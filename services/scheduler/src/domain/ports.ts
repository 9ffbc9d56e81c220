import type { eventsV1, personaV1, ragV1, sessionV1 } from '@chat/contracts';

/** The calls the scheduler makes to other services; the generated gRPC clients satisfy them. */
export interface SchedulerPorts {
  getPersona(req: { ownerId: string; id: string }): Promise<personaV1.GetPersonaResponse>;
  /** The API profile a persona names, for its limits; without it no per-profile limits apply. */
  getApiProfile?(req: { ownerId: string; id: string }): Promise<personaV1.GetApiProfileResponse>;
  /** The summary and the newest uncovered messages before a message (bounded by maxMessages). */
  getConversationWindow(req: { ownerId: string; sessionId: string; beforeMessageId: string; maxMessages: number; replyId: string }): Promise<sessionV1.GetConversationWindowResponse>;
  generate(req: Partial<ragV1.GenerateRequest>, options: { deadlineMs?: number; signal?: AbortSignal }): AsyncIterable<ragV1.GenerateResponse>;
  /** publish sends reply events of one session, in order, and resolves when the log has them. */
  publish(sessionId: string, events: eventsV1.ReplyEvent[]): Promise<void>;
}

/** The calls background summarisation makes. */
export interface SummaryPorts {
  listMessagesAfter(req: { ownerId: string; sessionId: string; afterPosition: number; beforePosition: number; limit: number }): Promise<sessionV1.ListMessagesAfterResponse>;
  summarize(req: Partial<ragV1.SummarizeRequest>): Promise<ragV1.SummarizeResponse>;
  /** Rejects with an ABORTED AppError when the stored version is no longer expectedVersion. */
  updateSummary(req: { ownerId: string; sessionId: string; text: string; coveredUntil: number; expectedVersion: number }): Promise<sessionV1.UpdateSummaryResponse>;
}
