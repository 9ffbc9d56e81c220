import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { freePort } from '@chat/db';
import { ROOT, StopWaiting, waitFor } from './harness.js';

/** PrivateKafkaOptions configure a test's own broker. */
export interface PrivateKafkaOptions {
  /**
   * The port clients of the PROXIED listener are told to use (a TcpProxy in front of
   * `proxiedListenPort`): a client bootstrapped through it keeps talking through it, because Kafka
   * answers each listener's metadata with that listener's advertised address.
   */
  proxyPort: number;
}

/**
 * PrivateKafka is a single-node Kafka (KRaft, broker + controller) of one test, started from the
 * jars `scripts/infra` fetches, with its own config, ports and data under a temp dir. It can be
 * killed with SIGKILL and started again on the same data, which the shared broker of every other
 * suite must never be. Two client listeners: CLIENT (direct) and PROXIED (advertised as a proxy's
 * port, so a test can cut one process off from the broker).
 */
export class PrivateKafka {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly onExit = () => this.child?.kill('SIGKILL');

  private constructor(
    readonly dir: string,
    readonly libs: string,
    readonly clientPort: number,
    readonly proxiedListenPort: number,
    readonly controllerPort: number,
    readonly proxyPort: number,
  ) {}

  /** brokers is the direct bootstrap address (`127.0.0.1:port`). */
  get brokers(): string {
    return `127.0.0.1:${this.clientPort}`;
  }

  /** proxiedBrokers is the bootstrap address through the proxy. */
  get proxiedBrokers(): string {
    return `127.0.0.1:${this.proxyPort}`;
  }

  /** logTail is the end of the broker's console and server log, for a failing test. */
  logTail(lines = 30): string {
    const read = (f: string) => {
      try {
        return readFileSync(join(this.dir, f), 'utf8').split('\n').slice(-lines).join('\n');
      } catch {
        return '';
      }
    };
    return `${read('console.log')}\n${read('server.log')}`;
  }

  /** create formats the storage of a new broker (it is not started yet). */
  static async create(options: PrivateKafkaOptions): Promise<PrivateKafka> {
    // The same jars as the shared broker; fetched through Maven on a fresh machine.
    const libs = execFileSync('bash', [join(ROOT, 'scripts', 'infra'), 'kafka-libs'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
    const dir = mkdtempSync(join(tmpdir(), 'chat-private-kafka-'));
    const [client, proxied, controller] = [await freePort(), await freePort(), await freePort()];
    const k = new PrivateKafka(dir, libs, client, proxied, controller, options.proxyPort);
    k.writeConfig();
    // One id in 64 starts with '-': hence `--cluster-id=<id>`, never `-t <id>`.
    const clusterId = randomBytes(16).toString('base64url');
    mkdirSync(join(dir, 'data'), { recursive: true });
    execFileSync('java', [...k.jvmArgs(), 'kafka.tools.StorageTool', 'format', `--cluster-id=${clusterId}`, '-c', join(dir, 'server.properties'), '--ignore-formatted'], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    return k;
  }

  private jvmArgs(): string[] {
    return ['-Xmx384m', '-XX:+UseSerialGC', '-Djava.awt.headless=true', `-Dlog4j.configuration=file:${join(this.dir, 'log4j.properties')}`, '-cp', `${this.libs}/*`];
  }

  private writeConfig(): void {
    const props = [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${this.controllerPort}`,
      `listeners=CLIENT://127.0.0.1:${this.clientPort},PROXIED://127.0.0.1:${this.proxiedListenPort},CONTROLLER://127.0.0.1:${this.controllerPort}`,
      `advertised.listeners=CLIENT://127.0.0.1:${this.clientPort},PROXIED://127.0.0.1:${this.proxyPort}`,
      'inter.broker.listener.name=CLIENT',
      'controller.listener.names=CONTROLLER',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,CLIENT:PLAINTEXT,PROXIED:PLAINTEXT',
      `log.dirs=${join(this.dir, 'data')}`,
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=false',
      'num.partitions=4',
    ];
    writeFileSync(join(this.dir, 'server.properties'), `${props.join('\n')}\n`);
    const log4j = [
      'log4j.rootLogger=WARN, file',
      'log4j.appender.file=org.apache.log4j.FileAppender',
      `log4j.appender.file.File=${join(this.dir, 'server.log')}`,
      'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
      'log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n',
      'log4j.logger.kafka.server.KafkaRaftServer=INFO',
    ];
    writeFileSync(join(this.dir, 'log4j.properties'), `${log4j.join('\n')}\n`);
  }

  /** start runs the broker and waits until it answers on the direct listener. */
  async start(timeoutMs = 90_000): Promise<void> {
    if (this.child && this.child.exitCode === null && this.child.signalCode === null) throw new Error('the private broker is already running');
    const out = openSync(join(this.dir, 'console.log'), 'a');
    const child = spawn('java', [...this.jvmArgs(), '-XX:+ExitOnOutOfMemoryError', `-Dkafka.logs.dir=${this.dir}`, 'kafka.Kafka', join(this.dir, 'server.properties')], {
      cwd: this.dir,
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    this.child = child;
    this.exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    process.once('exit', this.onExit);
    const admin = new Kafka({ clientId: 'private-kafka-probe', brokers: [this.brokers], logLevel: logLevel.NOTHING, connectionTimeout: 1_000, retry: { retries: 0 } }).admin();
    try {
      await waitFor(
        'the private Kafka broker to answer',
        async () => {
          if (child.exitCode !== null) throw new StopWaiting(`the private broker exited with ${child.exitCode}: ${this.logTail()}`);
          await admin.connect();
          const cluster = await admin.describeCluster();
          return cluster.brokers.length > 0 ? true : undefined;
        },
        timeoutMs,
        300,
      );
    } finally {
      await admin.disconnect().catch(() => {});
    }
  }

  /** kill9 kills the broker with SIGKILL (no shutdown, no flush) and waits until it is gone. */
  async kill9(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.exited;
    process.removeListener('exit', this.onExit);
  }

  /** stop ends the broker (SIGTERM, SIGKILL after a bound) and deletes its data. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await this.exited;
      clearTimeout(timer);
    }
    process.removeListener('exit', this.onExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
