import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createServer, type AddressInfo } from 'node:net';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { personaV1, ragV1 } from '@chat/contracts';
import { AppError, Code } from '@chat/errors';
import { configureLogger, getLogger } from '@chat/logger';
import { getClient, serverStream, startGrpcServer, unary, wrapImplementation, type GrpcServer } from '../src/index.js';

configureLogger({ silent: true });
const require = createRequire(import.meta.url);
const logger = getLogger('test');

/** freePort returns a loopback port nothing listens on (at the time of asking). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** A client for any service, loaded from a .proto file shipped by a dependency. */
function protoClient(protoFile: string, service: string, address: string): grpc.Client & Record<string, any> {
  const def = grpc.loadPackageDefinition(loadSync(protoFile, { keepCase: true, longs: Number, enums: String, defaults: true }));
  const ctor = service.split('.').reduce((o: any, k) => o[k], def) as typeof grpc.Client;
  return new ctor(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, any>;
}

/** complete gives every method the test does not use a handler that answers UNIMPLEMENTED. */
function complete<T extends object>(definition: grpc.ServiceDefinition, partial: T): Record<string, (...args: never[]) => unknown> {
  const out: Record<string, (...args: never[]) => unknown> = { ...(partial as Record<string, (...args: never[]) => unknown>) };
  for (const key of Object.keys(definition)) out[key] ??= async () => Promise.reject(new AppError(Code.Unimplemented, `${key} is not part of this test`));
  return out;
}

describe('gRPC server and clients (libs/grpc)', () => {
  let server: GrpcServer;
  let persona: personaV1.PersonaServiceClient;
  let rag: ragV1.RagServiceClient;

  before(async () => {
    const personaImpl = {
      async createPersona(): Promise<personaV1.CreatePersonaResponse> {
        throw AppError.invalid('the persona is not valid', { name: 'is required' });
      },
      async getPersona(req: personaV1.GetPersonaRequest): Promise<personaV1.GetPersonaResponse> {
        if (req.id === 'boom') throw new Error('database password=hunter2 leaked in a bug');
        if (req.id !== 'p1') throw AppError.notFound('persona', req.id);
        return { persona: personaV1.Persona.fromPartial({ id: 'p1', name: 'Ada' }) };
      },
      async listPersonas(): Promise<personaV1.ListPersonasResponse> {
        await new Promise((r) => setTimeout(r, 2_000));
        return { personas: [], nextPageToken: '' };
      },
      // The other persona RPCs are not exercised here.
      ...Object.fromEntries(
        ['updatePersona', 'deletePersona', 'createApiProfile', 'getApiProfile', 'listApiProfiles', 'updateApiProfile', 'deleteApiProfile', 'resolvePersona'].map((m) => [
          m,
          async () => {
            throw new AppError(Code.Unimplemented, 'not in this test');
          },
        ]),
      ),
    };
    const ragImpl = {
      async generate(req: ragV1.GenerateRequest, call: grpc.ServerWritableStream<ragV1.GenerateRequest, ragV1.GenerateResponse>) {
        call.write({ item: { $case: 'delta', value: { text: 'hel' } } });
        if (req.userMessage === 'fail') throw new AppError(Code.ResourceExhausted, 'the model is rate limited', { reason: 'rate_limited', details: { retry_after_s: 2 } });
        call.write({ item: { $case: 'completed', value: { content: 'hel', citations: [], model: 'm' } } });
      },
    };
    server = await startGrpcServer({
      address: '127.0.0.1:0',
      logger,
      services: [
        { name: 'chat.persona.v1.PersonaService', definition: personaV1.PersonaServiceService, implementation: wrapImplementation(personaV1.PersonaServiceService, complete(personaV1.PersonaServiceService, personaImpl), logger) },
        { name: 'chat.rag.v1.RagService', definition: ragV1.RagServiceService, implementation: wrapImplementation(ragV1.RagServiceService, complete(ragV1.RagServiceService, ragImpl), logger) },
      ],
    });
    persona = new personaV1.PersonaServiceClient(server.address, grpc.credentials.createInsecure());
    rag = new ragV1.RagServiceClient(server.address, grpc.credentials.createInsecure());
  });

  after(async () => {
    persona?.close();
    rag?.close();
    await server?.stop(1_000);
  });

  it('binds a free loopback port when asked for port 0', () => {
    assert.match(server.address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(server.address, '127.0.0.1:0');
  });

  it('answers grpc.health.v1 checks for each service and for the server', async () => {
    const health = protoClient(require.resolve('grpc-health-check/proto/health/v1/health.proto'), 'grpc.health.v1.Health', server.address);
    for (const service of ['', 'chat.persona.v1.PersonaService', 'chat.rag.v1.RagService']) {
      const res = await new Promise<{ status: string }>((resolve, reject) => health.Check({ service }, (e: Error | null, r: { status: string }) => (e ? reject(e) : resolve(r))));
      assert.equal(res.status, 'SERVING', service);
    }
    await assert.rejects(
      new Promise((resolve, reject) => health.Check({ service: 'nope.v1.Nothing' }, (e: Error | null, r: unknown) => (e ? reject(e) : resolve(r)))),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND,
    );
    health.close();
  });

  it('serves reflection that lists the services and describes their files', async () => {
    const protoFile = join(dirname(require.resolve('@grpc/reflection')), '..', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');
    const refl = protoClient(protoFile, 'grpc.reflection.v1.ServerReflection', server.address);
    const ask = (req: object) =>
      new Promise<any>((resolve, reject) => {
        const call = refl.ServerReflectionInfo();
        call.on('data', (d: unknown) => {
          resolve(d);
          call.end();
        });
        call.on('error', reject);
        call.write(req);
      });
    const list = await ask({ list_services: '' });
    const names = list.list_services_response.service.map((s: { name: string }) => s.name);
    assert.ok(names.includes('chat.persona.v1.PersonaService'), names.join(','));
    assert.ok(names.includes('chat.rag.v1.RagService'));
    const file = await ask({ file_containing_symbol: 'chat.session.v1.SessionService' });
    assert.ok(file.file_descriptor_response.file_descriptor_proto.length >= 1);
    refl.close();
  });

  it('carries an AppError across the wire with its code, reason, message and details', async () => {
    await assert.rejects(unary('persona service', persona.getPersona.bind(persona), { ownerId: 'o', id: 'missing' }), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, Code.NotFound);
      assert.equal(e.reason, 'not_found');
      assert.equal(e.message, 'persona "missing" was not found');
      assert.deepEqual(e.details, { kind: 'persona', id: 'missing' });
      return true;
    });
    await assert.rejects(
      unary('persona service', persona.createPersona.bind(persona), personaV1.CreatePersonaRequest.fromPartial({})),
      (e: unknown) => e instanceof AppError && e.code === Code.InvalidArgument && (e.details.fields as Record<string, string>).name === 'is required',
    );
  });

  it('turns an unexpected throw into INTERNAL without sending its cause', async () => {
    await assert.rejects(unary('persona service', persona.getPersona.bind(persona), { ownerId: 'o', id: 'boom' }), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, Code.Internal);
      assert.equal(e.message, 'internal error');
      assert.ok(!JSON.stringify(e.details).includes('hunter2'));
      return true;
    });
  });

  it('answers DEADLINE_EXCEEDED when a call outlives its deadline', async () => {
    await assert.rejects(unary('persona service', persona.listPersonas.bind(persona), personaV1.ListPersonasRequest.fromPartial({}), 100), (e: unknown) => e instanceof AppError && e.code === Code.DeadlineExceeded);
  });

  it('answers UNAVAILABLE, naming the target, when nothing listens until the deadline', async () => {
    const dead = new personaV1.PersonaServiceClient('127.0.0.1:1', grpc.credentials.createInsecure());
    await assert.rejects(unary('persona service', dead.getPersona.bind(dead), { ownerId: 'o', id: 'p1' }, 2_000), (e: unknown) => e instanceof AppError && e.code === Code.Unavailable && /persona service/.test(e.message));
    dead.close();
  });

  it('streams items and ends a failed stream with the error status (not the deadline)', async () => {
    const items: string[] = [];
    for await (const item of serverStream('rag service', rag.generate.bind(rag), ragV1.GenerateRequest.fromPartial({ userMessage: 'ok' }))) items.push(item.item?.$case ?? '?');
    assert.deepEqual(items, ['delta', 'completed']);
    await assert.rejects(
      (async () => {
        for await (const _ of serverStream('rag service', rag.generate.bind(rag), ragV1.GenerateRequest.fromPartial({ userMessage: 'fail' }), { deadlineMs: 10_000 })) void _;
      })(),
      (e: unknown) => e instanceof AppError && e.code === Code.ResourceExhausted && e.reason === 'rate_limited' && e.details.retry_after_s === 2,
    );
  });

  it('shares one client per generated client type and address, never one type for another', () => {
    const address = '127.0.0.1:1';
    const a = getClient(personaV1.PersonaServiceClient, address);
    const b = getClient(ragV1.RagServiceClient, address);
    // Every ts-proto client class is named the same; each type must still get its own client.
    assert.ok(a instanceof personaV1.PersonaServiceClient);
    assert.ok(b instanceof ragV1.RagServiceClient);
    assert.equal(getClient(personaV1.PersonaServiceClient, address), a);
    assert.notEqual(getClient(personaV1.PersonaServiceClient, '127.0.0.1:2'), a);
  });

  it('waits for a peer that is starting, within the deadline, instead of failing at once', async () => {
    const port = await freePort();
    const client = getClient(personaV1.PersonaServiceClient, `127.0.0.1:${port}`);
    // Nothing listens yet: the call must wait for the server rather than fail with UNAVAILABLE.
    const call = unary('persona service', client.getPersona.bind(client), { ownerId: 'o', id: 'p1' }, 8_000);
    await new Promise((r) => setTimeout(r, 400));
    const late = await startGrpcServer({
      address: `127.0.0.1:${port}`,
      logger,
      services: [
        {
          name: 'chat.persona.v1.PersonaService',
          definition: personaV1.PersonaServiceService,
          implementation: wrapImplementation(
            personaV1.PersonaServiceService,
            complete(personaV1.PersonaServiceService, { async getPersona() { return { persona: personaV1.Persona.fromPartial({ id: 'p1', name: 'Late' }) }; } }),
            logger,
          ),
        },
      ],
    });
    try {
      const res = await call;
      assert.equal(res.persona?.name, 'Late');
    } finally {
      await late.stop(1_000);
    }
  });

  it('still fails a call to an absent peer when its deadline passes', async () => {
    const client = getClient(personaV1.PersonaServiceClient, `127.0.0.1:${await freePort()}`);
    await assert.rejects(unary('persona service', client.getPersona.bind(client), { ownerId: 'o', id: 'p1' }, 300), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, Code.Unavailable);
      return true;
    });
  });
});
