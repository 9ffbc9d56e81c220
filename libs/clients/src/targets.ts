import { defineConfig, env } from '@chat/config';
import type { ModuleContext } from '@chat/runtime';

/** ServiceEndpoint is the value a service module exposes: where its gRPC server listens. */
export interface ServiceEndpoint {
  address: string;
}

/** Where other processes' gRPC servers are, for components that are not in this process. */
export const targetsConfig = defineConfig({
  PERSONA_GRPC_ADDR: env.address().optional(),
  SESSION_GRPC_ADDR: env.address().optional(),
  SCHEDULER_GRPC_ADDR: env.address().optional(),
  RAG_GRPC_ADDR: env.address().optional(),
});

const VARIABLE = {
  persona: 'PERSONA_GRPC_ADDR',
  session: 'SESSION_GRPC_ADDR',
  scheduler: 'SCHEDULER_GRPC_ADDR',
  rag: 'RAG_GRPC_ADDR',
} as const;

/** MeshComponent is a component that serves gRPC to the others (the gateway serves HTTP). */
export type MeshComponent = keyof typeof VARIABLE;

/**
 * loopbackMesh is the environment of a mesh with one OS process per target on 127.0.0.1 (how the
 * end-to-end tests and benchmarks run it, like a Kubernetes deployment on one machine):
 * `addresses`, the `*_GRPC_ADDR` every process shares, and `listen(c)`, the `*_GRPC_LISTEN` that
 * makes c's own process bind its port.
 */
export function loopbackMesh(ports: Record<MeshComponent, number>): { addresses: Record<string, string>; listen(component: MeshComponent): Record<string, string> } {
  const at = (c: MeshComponent) => `127.0.0.1:${ports[c]}`;
  return {
    addresses: Object.fromEntries((Object.keys(VARIABLE) as MeshComponent[]).map((c) => [VARIABLE[c], at(c)])),
    listen: (c) => ({ [`${c.toUpperCase()}_GRPC_LISTEN`]: at(c) }),
  };
}

/**
 * resolveTarget finds a component's gRPC address: its server in this process when it runs here
 * (`all` mode still calls over loopback gRPC), else the configured address. Modules that call
 * `resolveTarget` must list `targetsConfig` in their config and the component in `after`.
 */
export function resolveTarget(ctx: ModuleContext, component: keyof typeof VARIABLE): string {
  const local = ctx.find<ServiceEndpoint>(component);
  if (local) return local.address;
  const configured = ctx.config(targetsConfig)[VARIABLE[component]];
  if (!configured) {
    throw new Error(`${VARIABLE[component]} is required: the ${component} target does not run in this process`);
  }
  return configured;
}
