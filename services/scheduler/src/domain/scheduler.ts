import { eventsV1, ragV1, sessionV1 } from '@chat/contracts';
import { AppError, Code, toAppError } from '@chat/errors';
import type { Logger } from '@chat/logger';
import { priorityBucket, schedulerMetrics } from './metrics.js';
import { ReplyPublisher } from './reply-publisher.js';
import type { SchedulerPorts } from './ports.js';
import type { Summarizer } from './summarizer.js';
import { buildWindow, type Tokenizer, type WindowTurn } from './window.js';

/** SchedulerOptions tune the scheduler. */
export interface SchedulerOptions {
  replyTimeoutMs: number;
  idleEvictMs: number;
  /** Most uncovered messages read for the window (the token budget usually stops earlier). */
  windowMaxMessages: number;
  /** The prompt budget when a persona sets no history_budget_tokens. */
  defaultBudgetTokens: number;
  /** Tokens kept free for retrieved knowledge. */
  knowledgeReserveTokens: number;
}

const FINAL = new Set([
  sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED,
  sessionV1.MessageStatus.MESSAGE_STATUS_FAILED,
  sessionV1.MessageStatus.MESSAGE_STATUS_CANCELLED,
]);

/**
 * RuntimeSession is the sticky execution context of one active session: its messages run one at a
 * time in arrival order, and it keeps the session's event sequence number.
 */
class RuntimeSession {
  /** The last seq published for this session; undefined until read from the session service. */
  seq: number | undefined;
  tail: Promise<void> = Promise.resolve();
  queued = 0;
  lastActive = Date.now();
  constructor(readonly id: string) {}
}

/** Scheduler runs user messages through RuntimeSessions and publishes the replies as events. */
export class Scheduler {
  private readonly sessions = new Map<string, RuntimeSession>();
  private readonly inFlight = new Map<string, { ownerId: string; sessionId: string; controller: AbortController }>();
  private readonly evictTimer: NodeJS.Timeout;
  private completed = 0;
  private failed = 0;
  private readonly metrics = schedulerMetrics();

  constructor(
    private readonly ports: SchedulerPorts,
    private readonly options: SchedulerOptions,
    private readonly logger: Logger,
    private readonly tokenizer: Tokenizer,
    private readonly summarizer?: Summarizer,
  ) {
    this.evictTimer = setInterval(() => this.evictIdle(), Math.min(options.idleEvictMs, 60_000));
    this.evictTimer.unref();
  }

  /** push enqueues a message on its session's RuntimeSession; resolves when its outcome is published. */
  push(message: eventsV1.MessageCreated): Promise<void> {
    let rs = this.sessions.get(message.sessionId);
    if (!rs) {
      rs = new RuntimeSession(message.sessionId);
      this.sessions.set(message.sessionId, rs);
    }
    const runtime = rs;
    runtime.queued++;
    const bucket = { priority: priorityBucket(message.priority) };
    this.metrics.queueLength.inc(bucket);
    const run = runtime.tail.then(() => {
      this.metrics.queueLength.dec(bucket);
      return this.run(runtime, message);
    });
    runtime.tail = run.catch(() => {});
    return run.finally(() => {
      runtime.queued--;
      runtime.lastActive = Date.now();
    });
  }

  /** cancel stops a queued or running reply of this replica. */
  cancel(ownerId: string, sessionId: string, replyId: string): boolean {
    const f = this.inFlight.get(replyId);
    if (!f || f.ownerId !== ownerId || f.sessionId !== sessionId) return false;
    f.controller.abort();
    return true;
  }

  /** stats is a snapshot for GetStats and metrics. */
  stats() {
    let queued = 0;
    for (const rs of this.sessions.values()) queued += Math.max(0, rs.queued - (this.runningIn(rs.id) ? 1 : 0));
    return { runtimeSessions: this.sessions.size, queued, inFlight: this.inFlight.size, completed: this.completed, failed: this.failed };
  }

  /** stop ends the eviction timer and aborts replies in progress. */
  stop(): void {
    clearInterval(this.evictTimer);
    for (const f of this.inFlight.values()) f.controller.abort();
  }

  private runningIn(sessionId: string): boolean {
    for (const f of this.inFlight.values()) if (f.sessionId === sessionId) return true;
    return false;
  }

  private evictIdle(): void {
    const now = Date.now();
    for (const [id, rs] of this.sessions) if (rs.queued === 0 && now - rs.lastActive > this.options.idleEvictMs) this.sessions.delete(id);
  }

  /** run is RuntimeSession.run: resolve persona and history, generate, publish every step. */
  private async run(rs: RuntimeSession, m: eventsV1.MessageCreated): Promise<void> {
    const controller = new AbortController();
    this.inFlight.set(m.replyId, { ownerId: m.ownerId, sessionId: m.sessionId, controller });
    this.metrics.inflight.inc();
    const started = performance.now();
    const seconds = () => (performance.now() - started) / 1000;
    let firstToken = true;
    const publisher = new ReplyPublisher(m.sessionId, (id, events) => this.ports.publish(id, events));
    const base = { sessionId: m.sessionId, replyId: m.replyId, messageId: m.messageId, ownerId: m.ownerId };
    const next = (kind: eventsV1.ReplyEvent['kind']) => {
      rs.seq = (rs.seq ?? 0) + 1;
      publisher.push(eventsV1.ReplyEvent.fromPartial({ ...base, seq: rs.seq, kind } as eventsV1.ReplyEvent));
    };
    try {
      const win = await this.ports.getConversationWindow({
        ownerId: m.ownerId,
        sessionId: m.sessionId,
        beforeMessageId: m.messageId,
        maxMessages: this.options.windowMaxMessages,
        replyId: m.replyId,
      });
      rs.seq = Math.max(rs.seq ?? 0, win.session?.lastSeq ?? 0);
      if (FINAL.has(win.replyStatus)) {
        this.logger.info('reply already final; redelivered message skipped', { reply_id: m.replyId });
        this.metrics.replies.inc({ outcome: 'skipped' });
        return;
      }
      const { persona } = await this.ports.getPersona({ ownerId: m.ownerId, id: m.personaId });
      if (!persona) throw AppError.notFound('persona', m.personaId);
      const turns: WindowTurn[] = win.messages
        .filter((x) => x.status === sessionV1.MessageStatus.MESSAGE_STATUS_COMPLETED && x.content.trim())
        .map((x) => ({ role: x.role === sessionV1.Role.ROLE_USER ? 'user' : 'assistant', content: x.content, position: Number(x.position) }));
      const window = buildWindow(
        {
          budgetTokens: persona.settings?.historyBudgetTokens ?? this.options.defaultBudgetTokens,
          systemPrompt: persona.systemPrompt,
          userMessage: m.content,
          knowledgeReserveTokens: this.options.knowledgeReserveTokens,
          summary: win.summary?.text ?? '',
          turns,
        },
        this.tokenizer,
      );
      const history = window.history.map((x) => ({ role: x.role === 'user' ? ragV1.ChatRole.CHAT_ROLE_USER : ragV1.ChatRole.CHAT_ROLE_ASSISTANT, content: x.content }));
      const r = persona.settings?.retrieval;
      const stream = this.ports.generate(
        {
          ownerId: m.ownerId,
          personaId: m.personaId,
          sessionId: m.sessionId,
          replyId: m.replyId,
          systemPrompt: persona.systemPrompt,
          history,
          summary: window.summary,
          userMessage: m.content,
          temperature: persona.settings?.temperature,
          maxTokens: persona.settings?.maxTokens,
          topK: r?.topK ?? 5,
          scoreThreshold: r?.scoreThreshold,
        },
        { deadlineMs: this.options.replyTimeoutMs, signal: controller.signal },
      );
      let completed = false;
      for await (const item of stream) {
        if (item.item?.$case === 'delta') {
          if (firstToken) this.metrics.firstToken.observe(seconds());
          firstToken = false;
          next({ $case: 'delta', value: { text: item.item.value.text } });
        } else if (item.item?.$case === 'completed') {
          next({ $case: 'completed', value: item.item.value });
          completed = true;
        }
      }
      if (!completed) throw AppError.unavailable('the reply stream ended without completing');
      await publisher.flush();
      this.completed++;
      this.metrics.processing.observe({ outcome: 'completed' }, seconds());
      this.metrics.replies.inc({ outcome: 'completed' });
      // Off the critical path: the reply is out; fold what fell out of the window if it is enough.
      if (this.summarizer) {
        const oldestKept = window.history[0]?.position;
        const foldBefore = oldestKept ?? (win.messages.length ? Number(win.messages[win.messages.length - 1]!.position) + 1 : 0);
        const outside = win.olderUncovered + win.messages.filter((x) => Number(x.position) < foldBefore).length;
        if (foldBefore > 0) {
          this.summarizer.maybeSchedule({
            ownerId: m.ownerId,
            sessionId: m.sessionId,
            personaId: m.personaId,
            summary: { text: win.summary?.text ?? '', coveredUntil: Number(win.summary?.coveredUntil ?? 0), version: Number(win.summary?.version ?? 0) },
            foldBefore,
            outside,
            temperature: persona.settings?.temperature,
          });
        }
      }
    } catch (err) {
      const app = controller.signal.aborted ? new AppError(Code.Cancelled, 'the reply was cancelled', { reason: 'cancelled' }) : toAppError(err);
      if (app.code === Code.Internal) this.logger.error('reply failed', { reply_id: m.replyId, err: app.cause ?? app });
      else this.logger.warn('reply failed', { reply_id: m.replyId, code: app.reason, message: app.message });
      this.failed++;
      next({ $case: 'failed', value: { code: app.code === Code.Internal ? 'internal' : app.reason, message: app.code === Code.Internal ? 'internal error' : app.message } });
      const outcome = app.code === Code.Cancelled ? 'cancelled' : 'failed';
      this.metrics.processing.observe({ outcome }, seconds());
      this.metrics.replies.inc({ outcome });
      await publisher.flush();
    } finally {
      this.inFlight.delete(m.replyId);
      this.metrics.inflight.dec();
    }
  }
}
