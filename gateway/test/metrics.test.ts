import assert from 'node:assert/strict';
import { counter } from '@chat/metrics';
import { testApp } from './harness.js';

describe('gateway GET /metrics', () => {
  it('answers the Prometheus text format without credentials', async () => {
    counter({ name: 'test_gateway_scrape_total', help: 'a metric of this process' }).inc();
    const t = testApp();
    try {
      const res = await t.gateway.app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(res.statusCode, 200, res.body);
      assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      assert.match(res.body, /# TYPE test_gateway_scrape_total counter\ntest_gateway_scrape_total(\{[^}]*\})? 1\n/);
    } finally {
      await t.gateway.app.close();
    }
  });
});
