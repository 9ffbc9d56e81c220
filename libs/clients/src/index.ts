export { PersonaClient, RagClient, SchedulerClient, SessionClient } from './clients.js';
export { resolveTarget, targetsConfig, type ServiceEndpoint } from './targets.js';
