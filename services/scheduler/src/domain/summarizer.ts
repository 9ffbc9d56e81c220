import { ragV1, sessionV1 } from '@chat/contracts';
import { Code, toAppError } from '@chat/errors';
import type { Logger } from '@chat/logger';
import type { SummaryPorts } from './ports.js';
import type { Tokenizer } from './window.js';

/** SummarizerOptions tune background summarisation. */
export interface SummarizerOptions {
  /** Uncovered messages outside the window that start a summarisation. */
  thresholdMessages: number;
  /** Most messages read per page. */
  batchMessages: number;
  /** Most tokens of turns folded in one Summarize call. */
  batchTokens: number;
  /** Longest summary asked of the model, in tokens. */
  summaryMaxTokens: number;
  /** After a failure, a session's summarisation waits this long before it is tried again. */
  retryAfterMs: number;
}

/** SummaryJob is one session's summarisation: fold every uncovered turn before foldBefore. */
export interface SummaryJob {
  ownerId: string;
  sessionId: string;
  personaId: string;
  /** The summary as last read. */
  summary: { text: string; coveredUntil: number; version: number };
  /** Position of the oldest turn the prompt still quotes verbatim: only older turns are folded. */
  foldBefore: number;
  /** Uncovered messages older than foldBefore. */
  outside: number;
  temperature?: number;
}

const USABLE = sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED;

/**
 * Summarizer folds old turns into a session's rolling summary in the background, one job at a time
 * per session, incrementally (only turns after covered_until) and with optimistic concurrency.
 * Messages are never deleted; a failure keeps the previous summary and is retried later.
 */
export class Summarizer {
  private readonly running = new Map<string, Promise<void>>();
  private readonly failedAt = new Map<string, number>();
  private readonly storedListeners: Array<(sessionId: string) => void> = [];
  private stopped = false;

  constructor(
    private readonly ports: SummaryPorts,
    private readonly tokenizer: Tokenizer,
    private readonly options: SummarizerOptions,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** maybeSchedule starts a job when enough turns wait outside the window; returns whether it did. */
  maybeSchedule(job: SummaryJob): boolean {
    if (this.stopped || job.outside < this.options.thresholdMessages || this.running.has(job.sessionId)) return false;
    const failed = this.failedAt.get(job.sessionId);
    if (failed !== undefined && this.now() - failed < this.options.retryAfterMs) return false;
    const run = this.run(job)
      .catch((err: unknown) => {
        this.failedAt.set(job.sessionId, this.now());
        const app = toAppError(err);
        this.logger.warn('summarisation failed; the previous summary stays and it is retried later', { session_id: job.sessionId, code: app.reason, message: app.message });
      })
      .finally(() => this.running.delete(job.sessionId));
    this.running.set(job.sessionId, run);
    return true;
  }

  /** onSummaryStored calls listener with the session id after each summary this summarizer stored. */
  onSummaryStored(listener: (sessionId: string) => void): void {
    this.storedListeners.push(listener);
  }

  /** idle resolves when the session's job (if any) has ended. */
  async idle(sessionId?: string): Promise<void> {
    if (sessionId) await this.running.get(sessionId);
    else await Promise.all(this.running.values());
  }

  /** stop takes no new jobs and waits (at most waitMs) for those in progress; a cut job stores nothing. */
  async stop(waitMs = 5_000): Promise<void> {
    this.stopped = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }

  /** run folds pages of uncovered turns before foldBefore, one Summarize call and update per batch. */
  async run(job: SummaryJob): Promise<void> {
    let summary = job.summary;
    for (;;) {
      if (this.stopped) return;
      const page = await this.ports.listMessagesAfter({
        ownerId: job.ownerId,
        sessionId: job.sessionId,
        afterPosition: summary.coveredUntil,
        beforePosition: job.foldBefore,
        limit: this.options.batchMessages,
      });
      if (page.messages.length === 0) return;
      // Take whole messages up to the token cap (at least one).
      const turns: ragV1.ChatTurn[] = [];
      let tokens = 0;
      let coveredUntil = summary.coveredUntil;
      let taken = 0;
      for (const m of page.messages) {
        const usable = m.status === USABLE && m.content.trim() !== '';
        const cost = usable ? this.tokenizer.count(m.content) : 0;
        if (taken > 0 && tokens + cost > this.options.batchTokens) break;
        taken++;
        tokens += cost;
        coveredUntil = Number(m.position);
        if (usable) turns.push({ role: m.role === sessionV1.Role.ROLE_USER ? ragV1.ChatRole.CHAT_ROLE_USER : ragV1.ChatRole.CHAT_ROLE_ASSISTANT, content: m.content });
      }
      let text = summary.text;
      if (this.stopped) return;
      if (turns.length > 0) {
        const res = await this.ports.summarize({
          ownerId: job.ownerId,
          personaId: job.personaId,
          sessionId: job.sessionId,
          previousSummary: summary.text,
          turns,
          temperature: job.temperature,
          maxTokens: this.options.summaryMaxTokens,
        });
        text = res.summary.trim();
        if (this.stopped) return;
      }
      if (text) {
        try {
          const stored = await this.ports.updateSummary({ ownerId: job.ownerId, sessionId: job.sessionId, text, coveredUntil, expectedVersion: summary.version });
          const s = stored.summary;
          summary = { text: s?.text ?? text, coveredUntil: Number(s?.coveredUntil ?? coveredUntil), version: Number(s?.version ?? summary.version + 1) };
          for (const listener of this.storedListeners) listener(job.sessionId);
        } catch (err) {
          const app = toAppError(err);
          if (app.code === Code.Aborted) {
            // Another writer moved the summary on; its result stands, the next trigger reads it again.
            this.logger.info('summary changed meanwhile; this fold is dropped', { session_id: job.sessionId });
            return;
          }
          throw err;
        }
      } else {
        summary = { ...summary, coveredUntil }; // nothing to say yet: continue after these messages
      }
      this.failedAt.delete(job.sessionId);
      if (taken === page.messages.length && !page.hasMore) return;
    }
  }
}
