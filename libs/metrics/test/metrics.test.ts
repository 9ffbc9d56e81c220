import assert from 'node:assert/strict';
import { counter, gauge, histogram, initMetrics, METRICS_CONTENT_TYPE, registry, renderMetrics } from '../src/index.js';

describe('@chat/metrics', () => {
  it('gets or creates: the same name is the same metric, never registered twice', () => {
    const a = counter({ name: 'test_metrics_lib_total', help: 'a test counter', labelNames: ['topic'] });
    const b = counter({ name: 'test_metrics_lib_total', help: 'a test counter', labelNames: ['topic'] });
    assert.equal(a, b);
    assert.equal(gauge({ name: 'test_metrics_lib_gauge', help: 'g' }), gauge({ name: 'test_metrics_lib_gauge', help: 'g' }));
    assert.equal(histogram({ name: 'test_metrics_lib_seconds', help: 'h' }), histogram({ name: 'test_metrics_lib_seconds', help: 'h' }));
    assert.throws(() => gauge({ name: 'test_metrics_lib_total', help: 'x' }), /another type/);
  });

  it('renders the Prometheus text format with default labels and the Node.js metrics', async () => {
    initMetrics({ labels: { target: 'test' } });
    initMetrics({ labels: { target: 'test' } }); // idempotent: no double registration of the defaults
    counter({ name: 'test_metrics_lib_total', help: 'a test counter', labelNames: ['topic'] }).inc({ topic: 'chat.messages' }, 2);
    histogram({ name: 'test_metrics_lib_seconds', help: 'h' }).observe(0.2);
    const text = await renderMetrics();
    assert.match(text, /# TYPE test_metrics_lib_total counter/);
    assert.match(text, /test_metrics_lib_total\{topic="chat.messages",target="test"\} \d+/);
    assert.match(text, /test_metrics_lib_seconds_bucket\{le="0.25",target="test"\} \d+/);
    assert.match(text, /process_cpu_user_seconds_total/);
    assert.match(text, /nodejs_heap_size_used_bytes/);
    assert.match(METRICS_CONTENT_TYPE, /^text\/plain; version=0\.0\.4/);
    assert.ok(registry.getSingleMetric('test_metrics_lib_total'));
  });
});
