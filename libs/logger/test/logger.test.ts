import assert from 'node:assert/strict';
import { configureLogger, getLogger, redact, tapLogs, withContext } from '../src/index.js';

describe('logger', () => {
  it('writes JSON with service, target and trace id, and never a secret', async () => {
    configureLogger({ silent: true, target: 'all' });
    const lines: string[] = [];
    const untap = tapLogs((l) => lines.push(l));
    withContext({ traceId: 'a'.repeat(32) }, () =>
      getLogger('gateway').info('request', { authorization: 'Bearer abc.def', api_key: 'sk-live-1234567890', url: '/ws?ws_token=SECRET123', note: 'key sk-abcdefghijkl' }),
    );
    untap();
    assert.equal(lines.length, 1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(line.service, 'gateway');
    assert.equal(line.target, 'all');
    assert.equal(line.trace_id, 'a'.repeat(32));
    for (const secret of ['abc.def', 'sk-live-1234567890', 'SECRET123', 'sk-abcdefghijkl']) assert.ok(!lines[0]!.includes(secret), `${secret} leaked`);
  });

  it('redacts nested secret keys', () => {
    assert.deepEqual(redact({ profile: { api_key: 'k', name: 'n' }, list: [{ password: 'p' }] }), {
      profile: { api_key: '[REDACTED]', name: 'n' },
      list: [{ password: '[REDACTED]' }],
    });
  });
});
