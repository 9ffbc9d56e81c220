export { configureLogger, getLogger, redact, redactText, tapLogs, type Logger, type LoggerOptions } from './logger.js';
export { currentContext, newTraceId, withContext, type RequestContext } from './context.js';
