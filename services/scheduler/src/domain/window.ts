/** Tokenizer counts (and cuts) text in model tokens. */
export interface Tokenizer {
  count(text: string): number;
  /** The longest prefix of text within maxTokens. */
  truncate(text: string, maxTokens: number): string;
}

/** Tokens a chat message costs beyond its text (role and separators, as OpenAI counts them). */
export const MESSAGE_OVERHEAD_TOKENS = 4;
/** Tokens of the frame rag puts around the summary in the system message. */
export const SUMMARY_FRAME_TOKENS = 30;

/** WindowTurn is one earlier turn that may go into the prompt verbatim. */
export interface WindowTurn {
  role: 'user' | 'assistant';
  content: string;
  /** The message's position in the session. */
  position: number;
}

/** WindowInput is what the prompt window is built from. */
export interface WindowInput {
  /** The whole prompt's budget: persona `history_budget_tokens` or the default. */
  budgetTokens: number;
  systemPrompt: string;
  userMessage: string;
  /** Kept free for the retrieved knowledge rag adds to the system message. */
  knowledgeReserveTokens: number;
  /** The rolling summary of the turns before `turns` ('' when none). */
  summary: string;
  /** The newest uncovered turns, oldest first. */
  turns: readonly WindowTurn[];
}

/** Window is what goes to rag: the summary and the newest turns that fit, oldest first. */
export interface Window {
  summary: string;
  history: WindowTurn[];
  /** Tokens of the summary and the history, overheads included. */
  historyTokens: number;
  /** Tokens the summary and history could use. */
  availableTokens: number;
  /** Tokens of the whole prompt but the knowledge: system prompt, summary, history, message. */
  promptTokens: number;
  /** Turns left out because the budget was full (they wait to be folded into the summary). */
  dropped: number;
}

/**
 * buildWindow fits a prompt into the budget: the budget less the system prompt, the knowledge
 * reserve and the new message is what the summary and earlier turns may use. The summary goes
 * first (cut to half of that when it is longer); then turns, newest first, verbatim, until the
 * next one would not fit. Turns are never cut in the middle, and never skipped to fit an older one.
 */
export function buildWindow(input: WindowInput, tokenizer: Tokenizer): Window {
  const fixed = tokenizer.count(input.systemPrompt) + MESSAGE_OVERHEAD_TOKENS + tokenizer.count(input.userMessage) + MESSAGE_OVERHEAD_TOKENS;
  const available = Math.max(0, input.budgetTokens - fixed - input.knowledgeReserveTokens);
  let used = 0;
  let summary = input.summary.trim();
  if (summary) {
    let cost = tokenizer.count(summary) + SUMMARY_FRAME_TOKENS;
    if (cost > available / 2) {
      summary = tokenizer.truncate(summary, Math.max(0, Math.floor(available / 2) - SUMMARY_FRAME_TOKENS)).trim();
      cost = summary ? tokenizer.count(summary) + SUMMARY_FRAME_TOKENS : 0;
    }
    used += cost;
  }
  const history: WindowTurn[] = [];
  for (let i = input.turns.length - 1; i >= 0; i--) {
    const turn = input.turns[i]!;
    const cost = tokenizer.count(turn.content) + MESSAGE_OVERHEAD_TOKENS;
    if (used + cost > available) break;
    used += cost;
    history.push(turn);
  }
  history.reverse();
  return { summary, history, historyTokens: used, availableTokens: available, promptTokens: fixed + used, dropped: input.turns.length - history.length };
}
