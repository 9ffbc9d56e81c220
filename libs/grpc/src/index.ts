export { callMetadata, closeClients, getClient, serverStream, unary } from './client.js';
export { startGrpcServer, wrapImplementation, type GrpcServer, type ServiceRegistration } from './server.js';
export { fromGrpcError, toGrpcStatus } from './status.js';
