// The one entry point: `node main.js --target=all|gateway|session|persona|scheduler|rag[,…]`.
// Only this file reads argv; only @chat/config reads the environment.
import { ConfigError } from '@chat/config';
import { closeClients } from '@chat/grpc';
import { configureLogger } from '@chat/logger';
import { ALL, describeTargets, parseTargets, Runtime } from '@chat/runtime';
import { MODULES } from './modules.js';

function argValue(name: string): string | undefined {
  const prefix = `--${name}=`;
  const i = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(prefix));
  if (i < 0) return undefined;
  const a = process.argv[i]!;
  return a.startsWith(prefix) ? a.slice(prefix.length) : process.argv[i + 1];
}

async function main(): Promise<number> {
  if (process.argv.includes('--list-targets')) {
    process.stdout.write(`${describeTargets(MODULES)}\n`);
    return 0;
  }
  const spec = argValue('target') ?? ALL;
  const logger = configureLogger({ target: spec });
  let targets: string[];
  try {
    targets = parseTargets(spec, MODULES);
  } catch (err) {
    logger.error(`cannot start: ${(err as Error).message}`);
    return 2;
  }
  const runtime = new Runtime(MODULES, targets);
  let exitCode = 0;
  let stopRequested: (code: number) => void = () => {};
  const stopped = new Promise<number>((resolve) => (stopRequested = resolve));
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      logger.info('stopping: draining in-flight work', { signal: sig });
      stopRequested(0);
    });
  }
  // A bug that escapes every handler still ends in one clear line, a drained stop and exit 1.
  for (const event of ['uncaughtException', 'unhandledRejection'] as const) {
    process.on(event, (err: unknown) => {
      logger.error(`crashed: ${err instanceof Error ? err.message : String(err)}`, { err });
      stopRequested(1);
    });
  }
  runtime.onCrash((module, err) => {
    logger.error(`module ${module} crashed: ${err instanceof Error ? err.message : String(err)}`, { module, err });
    stopRequested(1);
  });
  try {
    logger.info('starting', { targets, modules: runtime.plan() });
    await runtime.start();
  } catch (err) {
    const message = err instanceof ConfigError ? err.message : (err as Error).message;
    logger.error(`cannot start: ${message}`, { err: err instanceof ConfigError ? undefined : (err as Error).cause });
    closeClients();
    return 1;
  }
  logger.info('ready', { targets });
  exitCode = await stopped;
  await runtime.stop();
  closeClients();
  logger.info('stopped', { exit_code: exitCode });
  return exitCode;
}

main().then(
  (code) => {
    // Let the logger flush, then exit even if a library left a handle open.
    setTimeout(() => process.exit(code), 50).unref();
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
