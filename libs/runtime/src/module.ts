import type { ConfigOf, ConfigSlice, EnvShape } from '@chat/config';
import type { Logger } from '@chat/logger';

/** ModuleContext is what a module's init receives from the runtime. */
export interface ModuleContext {
  /** The value another (already started) module produced; throws if it is not running. */
  get<T>(name: string): T;
  /** The value another module produced, or undefined when that module is not part of this process. */
  find<T>(name: string): T | undefined;
  /** A logger labelled with this module's name. */
  logger: Logger;
  /** The targets this process was asked to run (after expanding `all`). */
  targets: ReadonlySet<string>;
  /** Signals that the process is shutting down (aborted when stop begins). */
  shutdown: AbortSignal;
  /** The validated values of a configuration slice this module declared. */
  config<C extends ConfigSlice<EnvShape>>(slice: C): ConfigOf<C>;
}

/** Running is a started module: its value for dependents, how to stop it, and how it may die. */
export interface Running<T = unknown> {
  value: T;
  /** Drains in-flight work and releases resources; called once, in reverse start order. */
  stop?: () => Promise<void>;
  /** Rejects if the module crashes after start; the runtime then stops the process. */
  crashed?: Promise<never>;
}

/** ModuleDef declares one module: a name, what it needs, and how to start it. */
export interface ModuleDef<T = unknown> {
  name: string;
  /** Modules that must run before this one, in this process. */
  deps?: readonly string[];
  /** Modules this one starts after when they run in this process, without requiring them. */
  after?: readonly string[];
  /** True for modules a user may name with --target. */
  target?: boolean;
  /** Configuration slices this module reads; all are validated before any module starts. */
  config?: readonly ConfigSlice<EnvShape>[];
  /** One line for --list-targets. */
  description?: string;
  init(ctx: ModuleContext): Promise<Running<T>>;
}

/** defineModule is an identity helper that keeps the value type. */
export function defineModule<T>(def: ModuleDef<T>): ModuleDef<T> {
  return def;
}
