import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loopbackMesh } from '@chat/clients';
import { freePort } from '@chat/db';
import { dumpOutput, startProc, StopWaiting, stopProc, waitFor, waitReady, type Proc } from './harness.js';
import { API_KEYS } from './lifecycle.js';

/** MeshOptions are what a fault suite's mesh runs on. */
export interface MeshOptions {
  databaseUrl: string;
  /** Direct bootstrap address of the broker every process uses by default. */
  brokers: string;
  llm: { baseUrl: string; model: string };
  /** Extra environment for every process. */
  env?: Record<string, string>;
}

/**
 * Mesh runs the product as one OS process per target (persona, rag, session, scheduler(s),
 * gateway), like a Kubernetes deployment, and lets a test kill, restart and add processes.
 * Schedulers are named `scheduler-1`, `scheduler-2`, …; each binds its own gRPC port.
 */
export class Mesh {
  readonly procs = new Map<string, Proc>();
  /** Every process ever started (for logs of a failing test). */
  readonly history: Proc[] = [];
  /** The environment overrides each process was last started with. */
  readonly overrides = new Map<string, Record<string, string>>();
  readonly namespace = `faults-${randomUUID().slice(0, 8)}`;
  private readonly dataDir = mkdtempSync(join(tmpdir(), 'chat-e2e-faults-'));
  private ports: Record<string, number> = {};
  base = '';

  constructor(private readonly options: MeshOptions) {}

  /** The environment every process shares. */
  shared(): Record<string, string> {
    const p = this.ports;
    return {
      LLM_BASE_URL: this.options.llm.baseUrl,
      LLM_API_KEY: 'e2e-llm-key',
      LLM_MODEL: this.options.llm.model,
      DATABASE_URL: this.options.databaseUrl,
      DATABASE_POOL_MAX: '4',
      KAFKA_BROKERS: this.options.brokers,
      KAFKA_NAMESPACE: this.namespace,
      DATA_DIR: this.dataDir,
      API_KEYS,
      WS_TOKEN_SECRET: 'e2e-ws-token-secret-0123456789abcdef',
      // The first scheduler replica is the one the gateway asks (stats, cancel, dead letters).
      ...loopbackMesh({ persona: p.persona!, session: p.session!, scheduler: p['scheduler-1']!, rag: p.rag! }).addresses,
      ...this.options.env,
    };
  }

  /** start runs persona, rag, session, scheduler-1 and the gateway, and waits until all are ready. */
  async start(): Promise<void> {
    for (const name of ['persona', 'rag', 'session', 'scheduler-1', 'scheduler-2', 'gateway', 'metrics-scheduler-1', 'metrics-scheduler-2']) this.ports[name] = await freePort();
    this.base = `http://127.0.0.1:${this.ports.gateway}`;
    this.spawn('persona');
    this.spawn('rag');
    this.spawn('session');
    this.spawn('scheduler-1');
    this.spawn('gateway');
    try {
      await waitReady(this.base, [...this.procs.values()]);
      await Promise.all([...this.procs.keys()].map((n) => this.waitReady(n)));
    } catch (err) {
      this.dump();
      throw err;
    }
  }

  /** spawn starts one process (`scheduler-N` is a scheduler replica); env overrides the shared one. */
  spawn(name: string, env: Record<string, string> = {}): Proc {
    if (this.procs.get(name)?.child.exitCode === null && this.procs.get(name)?.child.signalCode === null) throw new Error(`${name} is running`);
    const target = name.startsWith('scheduler') ? 'scheduler' : name;
    const listen: Record<string, string> = {
      persona: 'PERSONA_GRPC_LISTEN',
      rag: 'RAG_GRPC_LISTEN',
      session: 'SESSION_GRPC_LISTEN',
      scheduler: 'SCHEDULER_GRPC_LISTEN',
      gateway: 'GATEWAY_HTTP_LISTEN',
    };
    const metrics: Record<string, string> = this.ports[`metrics-${name}`] ? { METRICS_LISTEN: `127.0.0.1:${this.ports[`metrics-${name}`]}` } : {};
    const p = startProc(name, target, { ...this.shared(), [listen[target]!]: `127.0.0.1:${this.ports[name]}`, ...metrics, ...env });
    this.procs.set(name, p);
    this.overrides.set(name, env);
    this.history.push(p);
    return p;
  }

  /** waitReady waits for the process's "ready" log line (its consumer groups have joined). */
  async waitReady(name: string, timeoutMs = 60_000): Promise<void> {
    const p = this.procs.get(name)!;
    await waitFor(
      `${name} to be ready`,
      async () => {
        if (p.child.exitCode !== null) throw new StopWaiting(`${name} exited with ${p.child.exitCode}`);
        return p.output.some((l) => l.includes('"message":"ready"')) ? true : undefined;
      },
      timeoutMs,
      100,
    );
  }

  /** inflight is how many replies a scheduler replica is generating now (its Prometheus gauge). */
  async inflight(name: string): Promise<number> {
    const res = await fetch(`http://127.0.0.1:${this.ports[`metrics-${name}`]}/metrics`);
    const m = /^chat_scheduler_inflight_generations\{[^}]*\} (\d+)$/m.exec(await res.text());
    if (!m) throw new Error(`${name} exports no chat_scheduler_inflight_generations`);
    return Number(m[1]);
  }

  /** restart starts a stopped process again and waits until it is ready. */
  async restart(name: string, env: Record<string, string> = {}): Promise<void> {
    this.spawn(name, env);
    await this.waitReady(name);
  }

  /** kill9 kills a process with SIGKILL and waits until it is gone. */
  async kill9(name: string): Promise<void> {
    const p = this.procs.get(name)!;
    p.child.kill('SIGKILL');
    await p.exited;
  }

  /** stop sends SIGTERM (drain) and returns the exit code. */
  async stop(name: string): Promise<number | null> {
    return stopProc(this.procs.get(name)!);
  }

  /** running lists the names of live processes. */
  running(): string[] {
    return [...this.procs.entries()].filter(([, p]) => p.child.exitCode === null && p.child.signalCode === null).map(([n]) => n);
  }

  dump(): void {
    dumpOutput(this.history);
  }

  /** close stops every process (gateway first, persona last) and deletes the data dir. */
  async close(): Promise<void> {
    const order = ['gateway', ...[...this.procs.keys()].filter((n) => n.startsWith('scheduler')), 'session', 'rag', 'persona'];
    for (const n of order) {
      const p = this.procs.get(n);
      if (p) await stopProc(p, 10_000);
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
