import { AppError } from '@chat/errors';
import type { schedulerV1 } from '@chat/contracts';
import type { Scheduler } from '../domain/scheduler.js';

/** schedulerHandlers exposes the scheduler's stats and cancellation over gRPC. */
export function schedulerHandlers(scheduler: Scheduler) {
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
  };
}
