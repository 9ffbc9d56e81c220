import type { EventBus } from '@chat/events';
import type { GatewayDeps } from './deps.js';
import { buildApp, type Gateway } from './server.js';
import { subscribeReplies } from './ws/replies.js';

/** RunningGateway is a listening gateway subscribed to reply events. */
export interface RunningGateway {
  url: string;
  gateway: Gateway;
  /** Rejects when the reply subscription dies. */
  crashed: Promise<never>;
  /** Stops taking requests, closes sockets with 1001, stops the subscription, closes the server. */
  stop(): Promise<void>;
}

export interface StartOptions extends GatewayDeps {
  bus: EventBus;
  host: string;
  port: number;
  /** Consumer group of the reply subscription; unique per instance by default. */
  groupId?: string;
}

/** startGateway builds the app, subscribes to reply events and listens. */
export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  const gateway = buildApp(options);
  const subscription = await subscribeReplies(options.bus, gateway.hub, options.logger, options.groupId);
  let url: string;
  try {
    await gateway.app.listen({ host: options.host, port: options.port });
    url = httpUrl(gateway);
  } catch (err) {
    await subscription.stop();
    await gateway.app.close();
    throw err;
  }
  gateway.hub.startHeartbeat();
  gateway.setReady(true);
  let stopping: Promise<void> | undefined;
  return {
    url,
    gateway,
    crashed: subscription.crashed,
    stop: () =>
      (stopping ??= (async () => {
        gateway.setReady(false);
        gateway.stopAccepting();
        await gateway.hub.closeAll(1001, 'gateway shutting down');
        await subscription.stop();
        gateway.wss.close();
        await gateway.app.close();
      })()),
  };
}

function httpUrl(gateway: Gateway): string {
  const address = gateway.app.server.address();
  if (!address || typeof address === 'string') throw new Error('gateway is not listening on TCP');
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}
