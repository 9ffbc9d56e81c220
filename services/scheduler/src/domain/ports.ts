import type { eventsV1, personaV1, ragV1, sessionV1 } from '@chat/contracts';

/** The calls the scheduler makes to other services; the generated gRPC clients satisfy them. */
export interface SchedulerPorts {
  getPersona(req: { ownerId: string; id: string }): Promise<personaV1.GetPersonaResponse>;
  getSession(req: { ownerId: string; id: string; recentLimit: number }): Promise<sessionV1.GetSessionResponse>;
  generate(req: Partial<ragV1.GenerateRequest>, options: { deadlineMs?: number; signal?: AbortSignal }): AsyncIterable<ragV1.GenerateResponse>;
  /** publish sends reply events of one session, in order, and resolves when the log has them. */
  publish(sessionId: string, events: eventsV1.ReplyEvent[]): Promise<void>;
}
