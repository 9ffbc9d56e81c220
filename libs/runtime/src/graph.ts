import { AppError } from '@chat/errors';
import type { ModuleDef } from './module.js';

/** ALL is the target that means every other target. */
export const ALL = 'all';

/** parseTargets splits `a,b` into target names and checks them; `all` expands to every target. */
export function parseTargets(spec: string, modules: readonly ModuleDef[]): string[] {
  const names = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (names.length === 0) throw AppError.invalid('no target given');
  const targets = modules.filter((m) => m.target).map((m) => m.name);
  const out = new Set<string>();
  for (const name of names) {
    if (name === ALL) targets.forEach((t) => out.add(t));
    else if (targets.includes(name)) out.add(name);
    else throw AppError.invalid(`unknown target ${JSON.stringify(name)}; targets are: ${[ALL, ...targets].join(', ')}`);
  }
  return [...out];
}

/**
 * startOrder returns the modules to run for the targets, dependencies first. `deps` pull modules in;
 * `after` only orders modules that are already in. Throws on unknown modules and on cycles.
 */
export function startOrder(targets: readonly string[], modules: readonly ModuleDef[]): ModuleDef[] {
  const byName = new Map(modules.map((m) => [m.name, m]));
  const needed = new Set<string>();
  const pull = (name: string, from: string) => {
    const m = byName.get(name);
    if (!m) throw AppError.invalid(`module ${JSON.stringify(from)} depends on unknown module ${JSON.stringify(name)}`);
    if (needed.has(name)) return;
    needed.add(name);
    for (const d of m.deps ?? []) pull(d, name);
  };
  for (const t of targets) pull(t, 'launcher');

  const order: ModuleDef[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]) => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') throw AppError.invalid(`module dependency cycle: ${[...path, name].join(' -> ')}`);
    state.set(name, 'visiting');
    const m = byName.get(name)!;
    const before = [...(m.deps ?? []), ...(m.after ?? []).filter((a) => needed.has(a))];
    for (const d of before) visit(d, [...path, name]);
    state.set(name, 'done');
    order.push(m);
  };
  // Visit in declaration order so the result is stable.
  for (const m of modules) if (needed.has(m.name)) visit(m.name, []);
  return order;
}

/** describeTargets renders the module graph for --list-targets. */
export function describeTargets(modules: readonly ModuleDef[]): string {
  const lines = [`${ALL}: every target below in one process (components still talk over gRPC on loopback)`];
  for (const m of modules.filter((x) => x.target)) {
    const deps = startOrder([m.name], modules)
      .map((d) => d.name)
      .filter((n) => n !== m.name);
    lines.push(`${m.name}: ${m.description ?? ''}${deps.length ? ` [needs: ${deps.join(', ')}]` : ''}`);
  }
  return lines.join('\n');
}
