import { AppError } from '@chat/errors';
import type { schedulerV1 } from '@chat/contracts';
import type { DeadLetterIndex } from '../adapters/dead-letters.js';
import type { Scheduler } from '../domain/scheduler.js';

const ID = /^[A-Za-z0-9._:-]{1,100}$/;

/** schedulerHandlers exposes the scheduler's stats, cancellation and dead letters over gRPC. */
export function schedulerHandlers(scheduler: Scheduler, deadLetters?: DeadLetterIndex) {
  const index = () => {
    if (!deadLetters) throw AppError.unavailable('the dead-letter index is not running');
    return deadLetters;
  };
  return {
    async getStats(): Promise<schedulerV1.GetStatsResponse> {
      return scheduler.stats();
    },
    async cancelReply(req: schedulerV1.CancelReplyRequest): Promise<schedulerV1.CancelReplyResponse> {
      const fields: Record<string, string> = {};
      if (!req.ownerId) fields.owner_id = 'is required';
      if (!req.sessionId) fields.session_id = 'is required';
      if (!req.replyId) fields.reply_id = 'is required';
      if (Object.keys(fields).length) throw AppError.invalid('the cancel request is not valid', fields);
      return { cancelled: scheduler.cancel(req.ownerId, req.sessionId, req.replyId) };
    },
    async listDeadLetters(req: schedulerV1.ListDeadLettersRequest): Promise<schedulerV1.ListDeadLettersResponse> {
      if (req.topic && !/^[A-Za-z0-9._-]{1,200}$/.test(req.topic)) throw AppError.invalid('topic is not a topic name', { topic: 'is not a topic name' });
      if (req.pageSize > 500) throw AppError.invalid('page_size must be at most 500', { page_size: 'must be at most 500' });
      return index().list({ topic: req.topic, pageSize: req.pageSize, pageToken: req.pageToken, includeReplayed: req.includeReplayed });
    },
    async replayDeadLetter(req: schedulerV1.ReplayDeadLetterRequest): Promise<schedulerV1.ReplayDeadLetterResponse> {
      if (!ID.test(req.id)) throw AppError.invalid('id must be a dead letter id', { id: 'must be a dead letter id' });
      return { deadLetter: await index().replay(req.id, req.requestedBy) };
    },
  };
}
