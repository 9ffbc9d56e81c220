import type { FastifyInstance, RouteOptions } from 'fastify';

/**
 * RouteRegistry records every route of an app as it is declared (a root `onRoute` hook, which
 * fastify also runs for routes of every plugin registered later). It keeps the route options
 * object itself, so schema changes made by later hooks (e.g. the /api scope's default querystring)
 * are seen when the document is built.
 */
export class RouteRegistry {
  readonly routes: RouteOptions[] = [];

  /** attach must run before any route is declared. */
  attach(app: FastifyInstance): this {
    app.addHook('onRoute', (route) => {
      this.routes.push(route as RouteOptions);
    });
    return this;
  }
}
