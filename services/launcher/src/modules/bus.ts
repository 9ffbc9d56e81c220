import { hostname } from 'node:os';
import { defineConfig, env } from '@chat/config';
import { InProcessBus, KafkaBus, Topics, type EventBus } from '@chat/events';
import { defineModule } from '@chat/runtime';
import { registerBusMetrics } from './metrics.js';
import { ALL_TARGETS } from './targets.js';

/** Where the event log is; unset means the in-process bus (valid only in `all` mode). */
export const busConfig = defineConfig({
  KAFKA_BROKERS: env.addressList().optional(),
  KAFKA_PARTITIONS: env.positiveInt().default(8),
  KAFKA_FETCH_WAIT_MS: env.millis().default(20),
  /** Prefix for every topic and consumer group, so deployments (or test runs) can share a cluster. */
  KAFKA_NAMESPACE: env.identifier().optional(),
});

/** busModule provides the event bus: Kafka when KAFKA_BROKERS is set, else the in-process bus. */
export const busModule = defineModule<EventBus>({
  name: 'bus',
  // Every target needs the bus, so this pulls the metrics module into every process.
  deps: ['metrics'],
  config: [busConfig],
  async init(ctx) {
    const cfg = ctx.config(busConfig);
    let bus: EventBus;
    if (cfg.KAFKA_BROKERS) {
      bus = new KafkaBus({ brokers: cfg.KAFKA_BROKERS, clientId: `chat-mesh-${hostname()}-${process.pid}`, maxWaitTimeMs: cfg.KAFKA_FETCH_WAIT_MS, namespace: cfg.KAFKA_NAMESPACE });
      await bus.ensureTopics(Object.values(Topics).map((name) => ({ name, partitions: cfg.KAFKA_PARTITIONS })));
      ctx.logger.info('event bus: kafka', { brokers: cfg.KAFKA_BROKERS, namespace: cfg.KAFKA_NAMESPACE ?? '' });
    } else {
      if (!ALL_TARGETS.every((t) => ctx.targets.has(t))) {
        throw new Error('KAFKA_BROKERS is required: the in-process bus only serves --target=all (one process for every component)');
      }
      bus = new InProcessBus();
      ctx.logger.info('event bus: in-process');
    }
    const unregister = registerBusMetrics(bus);
    return {
      value: bus,
      stop: async () => {
        unregister();
        await bus.close();
      },
    };
  },
});
