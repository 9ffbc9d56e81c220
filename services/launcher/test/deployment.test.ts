// The deployment descriptions stay true to the code: every configuration variable a module
// reads is documented in docs/operations.md, and the Kubernetes manifests in k8s/ run real
// targets with variables those targets read, on ports that agree with each other.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { parseTargets, startOrder } from '@chat/runtime';
import { MODULES } from '../src/modules.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..');
/** Variables read outside the config slices (the logger reads LOG_LEVEL before any module starts). */
const PROCESS_VARIABLES = new Set(['LOG_LEVEL']);

function variablesOf(targetSpec: string): Set<string> {
  const out = new Set(PROCESS_VARIABLES);
  for (const def of startOrder(parseTargets(targetSpec, MODULES), MODULES)) {
    for (const slice of def.config ?? []) for (const name of Object.keys(slice.shape)) out.add(name);
  }
  return out;
}

interface K8sObject {
  kind: string;
  metadata: { name: string };
  spec?: any;
  data?: Record<string, string>;
}

function manifests(dir: string): K8sObject[] {
  return readdirSync(join(root, dir))
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(root, dir, f), 'utf8')).map((d) => {
        assert.equal(d.errors.length, 0, `${dir}/${f}: ${d.errors.map((e) => e.message).join('; ')}`);
        return d.toJS() as K8sObject;
      }),
    )
    .filter(Boolean);
}

describe('deployment descriptions', () => {
  it('documents every configuration variable in docs/operations.md', () => {
    const doc = readFileSync(join(root, 'docs', 'operations.md'), 'utf8');
    const missing = [...variablesOf('all')].filter((v) => !doc.includes(`\`${v}\``));
    assert.deepEqual(missing, [], `undocumented variables: ${missing.join(', ')}`);
  });

  describe('k8s/base', () => {
    const objects = manifests('k8s/base');
    const byKind = (kind: string) => objects.filter((o) => o.kind === kind);
    const config = byKind('ConfigMap').find((c) => c.metadata.name === 'chat-config')!;
    const deployments = byKind('Deployment');

    it('lists every manifest in its kustomization', () => {
      const kustomization = parseAllDocuments(readFileSync(join(root, 'k8s/base/kustomization.yaml'), 'utf8'))[0]!.toJS() as { resources: string[] };
      const files = readdirSync(join(root, 'k8s/base')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
      assert.deepEqual([...kustomization.resources].sort(), files.sort());
    });

    it('runs each component target exactly once, one Deployment per target', () => {
      const targets = deployments.map((d) => {
        const args: string[] = d.spec.template.spec.containers[0].args;
        const target = args.find((a) => a.startsWith('--target='))?.slice('--target='.length);
        assert.ok(target, `${d.metadata.name} has no --target`);
        parseTargets(target, MODULES); // throws for an unknown target
        assert.equal(target, d.metadata.name);
        return target;
      });
      assert.deepEqual(targets.sort(), ['gateway', 'persona', 'rag', 'scheduler', 'session']);
    });

    it('sets only variables the target reads, and every variable of chat-config is read by some target', () => {
      const readByAny = new Set<string>();
      for (const d of deployments) {
        const known = variablesOf(d.metadata.name);
        for (const v of known) readByAny.add(v);
        const env: Array<{ name: string }> = d.spec.template.spec.containers[0].env ?? [];
        const unknown = env.map((e) => e.name).filter((n) => !known.has(n));
        assert.deepEqual(unknown, [], `${d.metadata.name} sets variables it does not read`);
      }
      const unread = Object.keys(config.data ?? {}).filter((k) => !readByAny.has(k));
      assert.deepEqual(unread, [], 'chat-config holds variables no target reads');
    });

    it('points every *_GRPC_ADDR at the Service and port its target listens on', () => {
      for (const [variable, value] of Object.entries(config.data ?? {})) {
        const m = /^([A-Z]+)_GRPC_ADDR$/.exec(variable);
        if (!m) continue;
        const target = m[1]!.toLowerCase();
        const [host, port] = value.split(':');
        assert.equal(host!.split('.')[0], target, `${variable} names the ${target} Service`);
        const d = deployments.find((x) => x.metadata.name === target)!;
        const listen = (d.spec.template.spec.containers[0].env as Array<{ name: string; value?: string }>).find((e) => e.name === `${m[1]}_GRPC_LISTEN`);
        assert.equal(listen?.value?.split(':')[1], port, `${target} listens where ${variable} points`);
        const svc = byKind('Service').find((s) => s.metadata.name === target)!;
        assert.ok(svc.spec.ports.some((p: { port: number }) => String(p.port) === port), `Service ${target} exposes ${port}`);
      }
    });

    it('probes every component on a port its container declares', () => {
      for (const d of deployments) {
        const c = d.spec.template.spec.containers[0];
        const ports = new Set<string | number>(c.ports.flatMap((p: { name: string; containerPort: number }) => [p.name, p.containerPort]));
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          const p = c[probe];
          assert.ok(p, `${d.metadata.name} has a ${probe}`);
          const port = p.grpc?.port ?? p.httpGet?.port;
          assert.ok(ports.has(port), `${d.metadata.name} ${probe} uses port ${port}`);
        }
      }
    });

    it('scales the scheduler no further than the partition count, on its consumer group', () => {
      const scaled = objects.find((o) => o.kind === 'ScaledObject' && o.metadata.name === 'scheduler')!;
      assert.equal(String(scaled.spec.maxReplicaCount), config.data!.KAFKA_PARTITIONS);
      const trigger = scaled.spec.triggers[0].metadata;
      assert.equal(trigger.consumerGroup, 'scheduler');
      assert.equal(trigger.topic, 'chat.messages.v1');
      assert.equal(trigger.bootstrapServers, config.data!.KAFKA_BROKERS);
    });
  });
});
