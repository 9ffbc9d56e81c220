import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * TcpProxy forwards loopback TCP connections to a target port, and can be told to stall: every
 * byte in either direction is held back (sockets paused, connections kept open, new ones accepted
 * but not forwarded), as a network partition looks to a client — requests neither fail nor arrive.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  /** The broker-side sockets (their data is the broker's answers). */
  private readonly upstreams = new Set<Socket>();
  private stalled = false;
  private answersStalled = false;
  /** Connections accepted so far. */
  connections = 0;

  constructor(
    readonly port: number,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<void> {
    this.server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.port, '127.0.0.1', () => resolve());
    });
  }

  private accept(client: Socket): void {
    this.connections++;
    const upstream = connect(this.targetPort, '127.0.0.1');
    this.upstreams.add(upstream);
    upstream.on('close', () => this.upstreams.delete(upstream));
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
      if (this.stalled || (this.answersStalled && s === upstream)) s.pause();
    }
    const forward = (from: Socket, to: Socket) => {
      from.on('data', (d) => {
        if (!to.write(d)) {
          from.pause();
          to.once('drain', () => {
            if (!this.stalled && !(this.answersStalled && this.upstreams.has(from))) from.resume();
          });
        }
      });
      from.on('end', () => to.end());
      from.on('close', () => to.destroy());
    };
    forward(client, upstream);
    forward(upstream, client);
  }

  /** stall holds back all traffic from now on (in both directions, on every connection). */
  stall(): void {
    this.stalled = true;
    for (const s of this.sockets) s.pause();
  }

  /**
   * stallAnswers holds back only what the target sends (requests still arrive): a client's writes
   * take effect but it never hears so — e.g. a produce the broker stored whose acknowledgement is lost.
   */
  stallAnswers(): void {
    this.answersStalled = true;
    for (const s of this.upstreams) s.pause();
  }

  /** close drops every connection and stops listening. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
