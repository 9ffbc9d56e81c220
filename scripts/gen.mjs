// Generates every contract from proto/: ts-proto (grpc-js) and protoc-gen-es code, plus a
// descriptor set for gRPC server reflection. Output goes to libs/contracts/src/generated/,
// which is rebuilt on every build and never committed or edited by hand.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const buf = join(root, 'node_modules', '.bin', 'buf');
const out = join(root, 'libs', 'contracts', 'src', 'generated');
const run = (args) => execFileSync(buf, args, { cwd: root, stdio: 'inherit' });

run(['lint']);
run(['generate']);
mkdirSync(out, { recursive: true });
run(['build', '-o', join(out, 'descriptors.binpb')]);
