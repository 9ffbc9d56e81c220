export { PersonaClient, RagClient, SchedulerClient, SessionClient } from './clients.js';
export { loopbackMesh, resolveTarget, targetsConfig, type MeshComponent, type ServiceEndpoint } from './targets.js';
