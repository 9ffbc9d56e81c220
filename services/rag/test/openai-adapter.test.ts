import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startDevModel, type DevModel } from '@chat/devmodel';
import { Code, isAppError } from '@chat/errors';
import { configureLogger } from '@chat/logger';
import { OpenAiChatModel } from '../src/adapters/openai/chat-model.js';

const SECRET = 'sk-test-THISISASECRETKEY1234567890';

async function collect(model: OpenAiChatModel): Promise<string> {
  let out = '';
  for await (const d of model.stream({ messages: [{ role: 'user', content: 'hello there' }], temperature: 0.2, maxTokens: 50 })) out += d;
  return out;
}

describe('the OpenAI chat model adapter', function () {
  this.timeout(20_000);
  let server: Server;
  let baseUrl: string;
  let status = 500;
  let delayMs = 0;

  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      setTimeout(() => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: `upstream says no; your key ${SECRET} was used`, type: 'x', code: 'y' } }));
      }, delayMs);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  const model = (timeoutMs = 5_000, url = baseUrl) => new OpenAiChatModel({ baseUrl: url, apiKey: SECRET, model: 'm', development: false }, { timeoutMs });

  const cases: Array<[number, Code]> = [
    [429, Code.ResourceExhausted],
    [500, Code.Unavailable],
    [503, Code.Unavailable],
    [400, Code.FailedPrecondition],
    [401, Code.FailedPrecondition],
    [404, Code.FailedPrecondition],
  ];
  for (const [s, code] of cases) {
    it(`maps an upstream ${s} to ${Code[code]} without leaking the key`, async () => {
      status = s;
      delayMs = 0;
      await assert.rejects(collect(model()), (err: unknown) => {
        assert.ok(isAppError(err));
        assert.equal(err.code, code);
        assert.ok(!err.message.includes(SECRET), err.message);
        assert.ok(!JSON.stringify(err.details).includes(SECRET));
        return true;
      });
    });
  }

  it('maps a timeout to DeadlineExceeded', async () => {
    status = 200;
    delayMs = 2_000;
    await assert.rejects(collect(model(200)), (err: unknown) => isAppError(err) && err.code === Code.DeadlineExceeded);
  });

  it('maps an unreachable endpoint to Unavailable', async () => {
    await assert.rejects(collect(model(2_000, 'http://127.0.0.1:1/v1')), (err: unknown) => isAppError(err) && err.code === Code.Unavailable);
  });

  describe('against the development model', () => {
    let dev: DevModel;
    before(async () => {
      dev = await startDevModel({ logger: configureLogger({ silent: true }) });
    });
    after(() => dev.stop());

    it('streams the reply text in pieces', async () => {
      const m = new OpenAiChatModel(dev.endpoint, { timeoutMs: 5_000 });
      assert.equal(m.model, 'dev-echo');
      const pieces: string[] = [];
      for await (const d of m.stream({ messages: [{ role: 'user', content: 'hello there' }] })) pieces.push(d);
      assert.ok(pieces.length > 1);
      assert.equal(pieces.join(''), '[development model] I have no knowledge about that yet. You asked: hello there');
    });

    it('stops when the request is aborted', async () => {
      const slow = await startDevModel({ logger: configureLogger({ silent: true }), tokenDelayMs: 50 });
      try {
        const m = new OpenAiChatModel(slow.endpoint, { timeoutMs: 5_000 });
        const ac = new AbortController();
        const pieces: string[] = [];
        await assert.rejects(
          (async () => {
            for await (const d of m.stream({ messages: [{ role: 'user', content: 'one two three four five six seven eight nine ten' }], signal: ac.signal })) {
              pieces.push(d);
              ac.abort();
            }
          })(),
          (err: unknown) => isAppError(err) && err.code === Code.Cancelled,
        );
        assert.equal(pieces.length, 1);
      } finally {
        await slow.stop();
      }
    });
  });
});
