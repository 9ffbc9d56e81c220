import { counter, DURATION_BUCKETS, gauge, histogram } from '@chat/metrics';

/** The reply outcomes of the processing histogram and the replies counter. */
export type ReplyOutcome = 'completed' | 'failed' | 'cancelled';

/** priorityBucket folds a message priority (-10..10) into low (< 0), normal (0) or high (> 0). */
export function priorityBucket(priority: number): 'low' | 'normal' | 'high' {
  return priority > 0 ? 'high' : priority < 0 ? 'low' : 'normal';
}

/** schedulerMetrics are process-wide: several Scheduler instances (tests) add to the same series. */
export function schedulerMetrics() {
  return {
    queueLength: gauge<'priority'>({
      name: 'chat_scheduler_queue_length',
      help: 'Messages waiting in RuntimeSessions (not yet running), by priority bucket (low < 0, normal = 0, high > 0)',
      labelNames: ['priority'],
    }),
    inflight: gauge({ name: 'chat_scheduler_inflight_generations', help: 'Replies being generated now' }),
    processing: histogram<'outcome'>({
      name: 'chat_scheduler_processing_seconds',
      help: 'Time from a reply starting to run to its final event, by outcome (completed|failed|cancelled)',
      labelNames: ['outcome'],
      buckets: DURATION_BUCKETS,
    }),
    firstToken: histogram({
      name: 'chat_scheduler_first_token_seconds',
      help: 'Time from a reply starting to run to its first streamed delta',
      buckets: DURATION_BUCKETS,
    }),
    retries: counter<'reason'>({
      name: 'chat_scheduler_retries_total',
      help: 'Reply attempts that failed with a retryable cause and were tried again, by reason (llm_unavailable, llm_rate_limited, first_token_timeout, …)',
      labelNames: ['reason'],
    }),
    deadLetters: counter<'reason'>({
      name: 'chat_scheduler_dead_letters_total',
      help: 'Replies that failed for good (reply.failed sent) whose message was handed to the dead-letter topic, by reason',
      labelNames: ['reason'],
    }),
    cache: counter<'cache' | 'result'>({
      name: 'chat_scheduler_cache_total',
      help: 'Lookups of a RuntimeSession cache (persona, history) by result: hit (no call to another service) or miss (read); speculation: early model calls of first messages (started, refused)',
      labelNames: ['cache', 'result'],
    }),
    replies: counter<'outcome'>({
      name: 'chat_scheduler_replies_total',
      help: 'Replies finished, by outcome (completed|failed|cancelled; skipped = redelivered message whose reply was already final)',
      labelNames: ['outcome'],
    }),
  };
}
