import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { loadFileDescriptorSetFromBuffer } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { descriptorSetPath } from '@chat/contracts';
import { toAppError, Code } from '@chat/errors';
import { newTraceId, withContext, type Logger } from '@chat/logger';
import { toGrpcStatus } from './status.js';

/** A service to register: its generated definition and its handlers. */
export interface ServiceRegistration {
  /** Fully-qualified name, e.g. chat.persona.v1.PersonaService, for health checking. */
  name: string;
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
}

/** GrpcServer is a started server with health checking and reflection. */
export interface GrpcServer {
  /** The bound address, host:port (port resolved when 0 was asked for). */
  address: string;
  health: HealthImplementation;
  /** Marks NOT_SERVING, lets in-flight calls finish (up to graceMs), then closes. */
  stop(graceMs?: number): Promise<void>;
}

let reflectionPackage: ReturnType<typeof loadFileDescriptorSetFromBuffer> | undefined;

/** traceIdFrom picks the trace id from incoming metadata or makes a new one. */
function traceIdFrom(metadata: grpc.Metadata): string {
  const v = metadata.get('x-trace-id')[0]?.toString();
  return v && /^[0-9a-f]{32}$/.test(v) ? v : newTraceId();
}

/**
 * wrapImplementation makes every handler run in a request context, turn thrown or rejected errors
 * into gRPC statuses, and log unexpected failures once with their cause.
 */
export function wrapImplementation(
  definition: grpc.ServiceDefinition,
  implementation: Record<string, (...args: never[]) => unknown>,
  logger: Logger,
): grpc.UntypedServiceImplementation {
  const out: grpc.UntypedServiceImplementation = {};
  for (const [key, method] of Object.entries(definition)) {
    const handler = implementation[key];
    if (!handler) throw new Error(`missing handler for ${method.path}`);
    const fail = (err: unknown) => {
      const app = toAppError(err);
      if (app.code === Code.Internal || app.code === Code.Unknown) logger.error('rpc failed', { method: method.path, err: app.cause ?? app });
      return toGrpcStatus(app);
    };
    if (!method.requestStream && !method.responseStream) {
      out[key] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        withContext({ traceId: traceIdFrom(call.metadata) }, () => {
          Promise.resolve()
            .then(() => (handler as (req: unknown, call: unknown) => unknown)(call.request, call))
            .then(
              (res) => callback(null, res),
              (err: unknown) => callback(fail(err) as grpc.ServerErrorResponse),
            );
        });
      };
    } else if (!method.requestStream && method.responseStream) {
      out[key] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        withContext({ traceId: traceIdFrom(call.metadata) }, () => {
          Promise.resolve()
            .then(() => (handler as (req: unknown, call: unknown) => unknown)(call.request, call))
            .then(
              () => call.end(),
              (err: unknown) => {
                // emit('error', status) sends the status to the client; destroy() would not.
                if (!call.cancelled) call.emit('error', fail(err));
              },
            );
        });
      };
    } else {
      throw new Error(`${method.path}: client-streaming RPCs are not supported by this wrapper`);
    }
  }
  return out;
}

/** startGrpcServer binds a server with the given services plus grpc.health.v1 and reflection. */
export async function startGrpcServer(options: {
  address: string;
  services: ServiceRegistration[];
  logger: Logger;
}): Promise<GrpcServer> {
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_permit_without_calls': 1,
  });
  const statuses: Record<string, 'SERVING'> = { '': 'SERVING' };
  for (const s of options.services) {
    server.addService(s.definition, s.implementation);
    statuses[s.name] = 'SERVING';
  }
  const health = new HealthImplementation(statuses);
  health.addToServer(server);
  reflectionPackage ??= loadFileDescriptorSetFromBuffer(readFileSync(descriptorSetPath));
  new ReflectionService(reflectionPackage).addToServer(server);

  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(options.address, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const host = options.address.slice(0, options.address.lastIndexOf(':'));
  const address = `${host}:${port}`;
  options.logger.info('grpc server listening', { address, services: options.services.map((s) => s.name) });

  return {
    address,
    health,
    stop: (graceMs = 10_000) =>
      new Promise<void>((resolve) => {
        for (const name of Object.keys(statuses)) health.setStatus(name, 'NOT_SERVING');
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
