import { loadConfig, type ConfigSlice, type Env, type EnvShape } from '@chat/config';
import { getLogger, type Logger } from '@chat/logger';
import { startOrder } from './graph.js';
import type { ModuleContext, ModuleDef, Running } from './module.js';

/** RuntimeOptions tune the runtime's stop behaviour. */
export interface RuntimeOptions {
  /** How long one module may take to stop before the runtime moves on. */
  stopTimeoutMs?: number;
  logger?: Logger;
  /** Where configuration comes from; process.env by default. */
  env?: Env;
}

/**
 * Runtime starts the modules of the requested targets in dependency order, stops them in reverse,
 * and turns a failing start or a later crash of any module into the stop of the whole process.
 */
export class Runtime {
  private readonly running: Array<{ def: ModuleDef; run: Running }> = [];
  private readonly values = new Map<string, unknown>();
  private readonly shutdownController = new AbortController();
  private readonly logger: Logger;
  private stopping: Promise<void> | undefined;
  private crashHandlers: Array<(module: string, err: unknown) => void> = [];

  constructor(
    private readonly modules: readonly ModuleDef[],
    private readonly targets: readonly string[],
    private readonly options: RuntimeOptions = {},
  ) {
    this.logger = options.logger ?? getLogger('runtime');
  }

  /** The names of the modules that will run, in start order. */
  plan(): string[] {
    return startOrder(this.targets, this.modules).map((m) => m.name);
  }

  /** The value a started module produced. */
  get<T>(name: string): T {
    if (!this.values.has(name)) throw new Error(`module ${name} is not running in this process`);
    return this.values.get(name) as T;
  }

  /** onCrash registers a callback for a module that fails after it started. */
  onCrash(fn: (module: string, err: unknown) => void): void {
    this.crashHandlers.push(fn);
  }

  /** validateConfig checks every slice the planned modules declare; throws ConfigError naming each problem. */
  validateConfig(): Map<ConfigSlice<EnvShape>, unknown> {
    const slices = new Set<ConfigSlice<EnvShape>>();
    for (const def of startOrder(this.targets, this.modules)) for (const s of def.config ?? []) slices.add(s);
    return loadConfig([...slices], this.options.env ?? process.env) as Map<ConfigSlice<EnvShape>, unknown>;
  }

  /** start runs each module's init in order; on a failure it stops what started and rethrows. */
  async start(): Promise<void> {
    const order = startOrder(this.targets, this.modules);
    const targets = new Set(this.targets);
    const config = this.validateConfig();
    for (const def of order) {
      const ctx: ModuleContext = {
        get: <T>(name: string) => this.get<T>(name),
        find: <T>(name: string) => this.values.get(name) as T | undefined,
        logger: getLogger(def.name),
        targets,
        shutdown: this.shutdownController.signal,
        config: ((slice: ConfigSlice<EnvShape>) => {
          if (!config.has(slice)) throw new Error(`module ${def.name} reads a configuration slice it did not declare`);
          return config.get(slice);
        }) as ModuleContext['config'],
      };
      let run: Running;
      try {
        run = await def.init(ctx);
      } catch (err) {
        const wrapped = new ModuleStartError(def.name, err);
        await this.stop();
        throw wrapped;
      }
      this.running.push({ def, run });
      this.values.set(def.name, run.value);
      run.crashed?.catch((err: unknown) => {
        if (this.stopping) return;
        for (const fn of this.crashHandlers) fn(def.name, err);
      });
      this.logger.debug('module started', { module: def.name });
    }
  }

  /** stop stops every started module in reverse order; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.shutdownController.abort();
      const timeout = this.options.stopTimeoutMs ?? 15_000;
      for (const { def, run } of [...this.running].reverse()) {
        if (!run.stop) continue;
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            run.stop(),
            new Promise<void>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`did not stop within ${timeout} ms`)), timeout);
            }),
          ]);
        } catch (err) {
          this.logger.error('module failed to stop cleanly', { module: def.name, err });
        } finally {
          clearTimeout(timer);
        }
      }
      this.running.length = 0;
    })();
    return this.stopping;
  }
}

/** ModuleStartError says which module failed to start and why. */
export class ModuleStartError extends Error {
  override readonly name = 'ModuleStartError';
  constructor(
    readonly module: string,
    cause: unknown,
  ) {
    super(`module ${module} failed to start: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
  }
}
