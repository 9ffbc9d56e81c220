import { KafkaBus } from '../src/index.js';

/** eventually polls fn every `everyMs` until it is true; fails after timeoutMs naming what it waited for. */
export async function eventually(what: string, fn: () => boolean, timeoutMs = 20_000, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * kafkaBuses, called in a describe block, fails the suite without KAFKA_BROKERS (`npm test` starts
 * Kafka), closes every bus it made after the suite, and returns a maker of buses under a namespace.
 */
export function kafkaBuses(clientPrefix: string): (namespace?: string) => KafkaBus {
  const brokers = process.env.KAFKA_BROKERS?.split(',');
  const buses: KafkaBus[] = [];
  before(function () {
    if (!brokers) throw new Error('KAFKA_BROKERS is not set (npm test starts Kafka; or run scripts/infra up)');
  });
  after(async () => {
    await Promise.all(buses.map((b) => b.close()));
  });
  return (namespace) => {
    const bus = new KafkaBus({ brokers: brokers!, clientId: `${clientPrefix}-${process.pid}`, namespace });
    buses.push(bus);
    return bus;
  };
}
