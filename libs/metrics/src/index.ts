// @chat/metrics: one process-wide Prometheus registry. Modules get-or-create their metrics by name,
// so running several components in one process (`--target=all`) or in tests never registers twice.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type CounterConfiguration, type GaugeConfiguration, type HistogramConfiguration } from 'prom-client';

/** The registry every metric of this process lives in. */
export const registry = new Registry();

/** The content type of the text rendering: `text/plain; version=0.0.4; charset=utf-8`. */
export const METRICS_CONTENT_TYPE: string = registry.contentType;

let defaultsCollected = false;

/**
 * initMetrics sets the default labels every metric carries (e.g. `{ target: 'all' }`) and starts
 * the default Node.js metrics (process_*, nodejs_*) once. Safe to call more than once.
 */
export function initMetrics(options: { labels?: Record<string, string>; defaultMetrics?: boolean } = {}): void {
  if (options.labels) registry.setDefaultLabels(options.labels);
  if ((options.defaultMetrics ?? true) && !defaultsCollected) {
    defaultsCollected = true;
    collectDefaultMetrics({ register: registry });
  }
}

type Kind = 'counter' | 'gauge' | 'histogram';

function existing<T>(name: string, kind: Kind, ctor: abstract new (...args: never[]) => T): T | undefined {
  const m = registry.getSingleMetric(name);
  if (!m) return undefined;
  if (!(m instanceof ctor)) throw new Error(`metric ${name} is already registered with another type than ${kind}`);
  return m;
}

/** counter returns the counter of this name, creating it on first use. */
export function counter<L extends string = string>(config: Omit<CounterConfiguration<L>, 'registers'>): Counter<L> {
  return existing(config.name, 'counter', Counter<L>) ?? new Counter<L>({ ...config, registers: [registry] });
}

/** gauge returns the gauge of this name, creating it on first use (a `collect` is only taken then). */
export function gauge<L extends string = string>(config: Omit<GaugeConfiguration<L>, 'registers'>): Gauge<L> {
  return existing(config.name, 'gauge', Gauge<L>) ?? new Gauge<L>({ ...config, registers: [registry] });
}

/** histogram returns the histogram of this name, creating it on first use. */
export function histogram<L extends string = string>(config: Omit<HistogramConfiguration<L>, 'registers'>): Histogram<L> {
  return existing(config.name, 'histogram', Histogram<L>) ?? new Histogram<L>({ ...config, registers: [registry] });
}

/** renderMetrics is the Prometheus text exposition of every metric of this process. */
export function renderMetrics(): Promise<string> {
  return registry.metrics();
}

/** Buckets (seconds) for reply processing: 10 ms to 5 min. */
export const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export type { Counter, Gauge, Histogram, Registry } from 'prom-client';
