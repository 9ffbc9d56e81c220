import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { defineConfig, env } from '@chat/config';
import type { EventBus } from '@chat/events';
import { parseListen } from '@chat/gateway';
import { counter, initMetrics, METRICS_CONTENT_TYPE, renderMetrics } from '@chat/metrics';
import { defineModule } from '@chat/runtime';
import { ALL_TARGETS } from './targets.js';

/** Where a separate Prometheus endpoint listens; unset means none (the gateway serves /metrics on its own port). */
export const metricsConfig = defineConfig({
  METRICS_LISTEN: env.address().optional(),
});

/** The value of the metrics module. */
export interface MetricsValue {
  /** The URL of the separate /metrics listener, when METRICS_LISTEN is set. */
  url?: string;
}

/** The counters a bus keeps; read structurally so a bus without `stats()` simply counts nothing. */
type BusCounters = { deadLettered?: Record<string, number>; retries?: Record<string, number> };
const buses = new Set<{ stats?(): BusCounters }>();

/** sum adds up one counter family of every registered bus, per topic. */
function sum(pick: (s: BusCounters) => Record<string, number> | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const bus of buses) {
    let stats: BusCounters | undefined;
    try {
      stats = bus.stats?.();
    } catch {
      stats = undefined;
    }
    for (const [topic, n] of Object.entries(pick(stats ?? {}) ?? {})) out.set(topic, (out.get(topic) ?? 0) + n);
  }
  return out;
}

/** A counter whose values are read from the buses' own monotonic counters at scrape time. */
function busCounter(name: string, help: string, pick: (s: BusCounters) => Record<string, number> | undefined) {
  counter<'topic'>({
    name,
    help,
    labelNames: ['topic'],
    collect() {
      this.reset();
      for (const [topic, n] of sum(pick)) this.inc({ topic }, n);
    },
  });
}

/**
 * registerBusMetrics exposes chat_bus_retries_total and chat_bus_dead_letters_total of this bus
 * (from `bus.stats()`, when the bus has it); the returned function removes the bus again.
 */
export function registerBusMetrics(bus: EventBus): () => void {
  busCounter('chat_bus_retries_total', 'Failed event handler attempts that were retried, by topic', (s) => s.retries);
  busCounter('chat_bus_dead_letters_total', 'Events given up on and published to <topic>.DLT, by topic', (s) => s.deadLettered);
  const entry = bus as { stats?(): BusCounters };
  buses.add(entry);
  return () => void buses.delete(entry);
}

/**
 * metricsModule sets up the process-wide registry (default Node.js metrics, a `target` label) and,
 * when METRICS_LISTEN is set, serves GET /metrics there. Every process has it: the bus, which every
 * target needs, depends on it.
 */
export const metricsModule = defineModule<MetricsValue>({
  name: 'metrics',
  config: [metricsConfig],
  description: 'Prometheus metrics registry; GET /metrics on METRICS_LISTEN when set',
  async init(ctx) {
    const cfg = ctx.config(metricsConfig);
    const all = ALL_TARGETS.every((t) => ctx.targets.has(t));
    initMetrics({ labels: { target: all ? 'all' : [...ctx.targets].sort().join(',') } });
    if (!cfg.METRICS_LISTEN) return { value: {} };
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
        return;
      }
      renderMetrics().then(
        (text) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text),
        (err: unknown) => {
          ctx.logger.error('metrics rendering failed', { err });
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
        },
      );
    });
    const { host, port } = parseListen(cfg.METRICS_LISTEN);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}/metrics`;
    ctx.logger.info('metrics listening', { url });
    return {
      value: { url },
      stop: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
          server.closeAllConnections();
        }),
    };
  },
});
