import assert from 'node:assert/strict';
import { checkHost, checkIp, checkResolved, formatIp, parseAllowList, parseIp, parseIPv4, parseIPv6, PUBLIC_ONLY, type AddressCategory } from '../src/fetch/address.js';
import { checkUrl, FetchError } from '../src/fetch/safe-fetch.js';

// Pure-function tests: nothing here resolves a name or opens a connection.

/** Bypass attempts: each must be refused for the given reason, as a URL and as a bare host. */
const BYPASSES: Array<[url: string, category: AddressCategory]> = [
  ['http://127.0.0.1/', 'loopback'],
  ['http://127.1/', 'loopback'],
  ['http://127.0.1/', 'loopback'],
  ['http://2130706433/', 'loopback'],
  ['http://0x7f000001/', 'loopback'],
  ['http://0x7f.1/', 'loopback'],
  ['http://0x7f.0x0.0x0.0x1/', 'loopback'],
  ['http://0177.0.0.1/', 'loopback'],
  ['http://0177.1/', 'loopback'],
  ['http://017700000001/', 'loopback'],
  ['http://127.0.0.1./', 'loopback'],
  ['http://127.000.000.001/', 'loopback'],
  ['http://127.255.255.254/', 'loopback'],
  ['http://localhost/', 'loopback'],
  ['http://LOCALHOST./', 'loopback'],
  ['http://api.localhost/', 'loopback'],
  ['http://[::1]/', 'loopback'],
  ['http://[0:0:0:0:0:0:0:1]/', 'loopback'],
  ['http://[::ffff:127.0.0.1]/', 'loopback'],
  ['http://[::ffff:7f00:1]/', 'loopback'],
  ['http://[0:0:0:0:0:ffff:127.0.0.1]/', 'loopback'],
  ['http://[::127.0.0.1]/', 'loopback'],
  ['http://[64:ff9b::127.0.0.1]/', 'loopback'],
  ['http://[2002:7f00:1::]/', 'loopback'],
  ['http://[::ffff:0:127.0.0.1]/', 'loopback'],
  ['http://0.0.0.0/', 'unspecified'],
  ['http://0/', 'unspecified'],
  ['http://0x0/', 'unspecified'],
  ['http://[::]/', 'unspecified'],
  ['http://10.0.0.1/', 'private'],
  ['http://10.255.255.255/', 'private'],
  ['http://012.0.0.1/', 'private'],
  ['http://167772161/', 'private'],
  ['http://172.16.0.1/', 'private'],
  ['http://172.31.255.255/', 'private'],
  ['http://192.168.1.1/', 'private'],
  ['http://0xc0.0xa8.1.1/', 'private'],
  ['http://3232235777/', 'private'],
  ['http://[::ffff:10.0.0.1]/', 'private'],
  ['http://[::ffff:c0a8:101]/', 'private'],
  ['http://[64:ff9b::a00:1]/', 'private'],
  ['http://[2002:c0a8:101::1]/', 'private'],
  ['http://169.254.169.254/', 'cloud_metadata'],
  ['http://2852039166/', 'cloud_metadata'],
  ['http://0xa9fea9fe/', 'cloud_metadata'],
  ['http://0251.0376.0251.0376/', 'cloud_metadata'],
  ['http://169.254.43518/', 'cloud_metadata'],
  ['http://[::ffff:169.254.169.254]/', 'cloud_metadata'],
  ['http://[::ffff:a9fe:a9fe]/', 'cloud_metadata'],
  ['http://[fd00:ec2::254]/', 'cloud_metadata'],
  ['http://169.254.170.2/', 'cloud_metadata'],
  ['http://168.63.129.16/', 'cloud_metadata'],
  ['http://100.100.100.200/', 'cloud_metadata'],
  ['http://metadata.google.internal/', 'cloud_metadata'],
  ['http://metadata.google.internal./', 'cloud_metadata'],
  ['http://169.254.1.1/', 'link_local'],
  ['http://[fe80::1]/', 'link_local'],
  ['http://[febf:ffff::1]/', 'link_local'],
  ['http://100.64.0.1/', 'carrier_grade_nat'],
  ['http://100.127.255.255/', 'carrier_grade_nat'],
  ['http://[fc00::1]/', 'unique_local'],
  ['http://[fd12:3456:789a::1]/', 'unique_local'],
  ['http://[fec0::1]/', 'site_local'],
  ['http://224.0.0.1/', 'multicast'],
  ['http://239.255.255.250/', 'multicast'],
  ['http://[ff02::1]/', 'multicast'],
  ['http://255.255.255.255/', 'broadcast'],
  ['http://240.0.0.1/', 'reserved'],
  ['http://192.0.2.10/', 'documentation'],
  ['http://198.51.100.7/', 'documentation'],
  ['http://203.0.113.9/', 'documentation'],
  ['http://[2001:db8::1]/', 'documentation'],
  ['http://198.18.0.1/', 'benchmarking'],
  ['http://192.0.0.8/', 'ietf_protocol'],
  ['http://192.88.99.1/', 'relay_6to4'],
  ['http://[2001::1]/', 'teredo'],
  ['http://[64:ff9b:1::1]/', 'nat64_local'],
  ['http://[100::1]/', 'discard'],
  ['http://[::8.8.8.8]/', 'ipv4_compatible'],
  ['http://[::2]/', 'unspecified'],
  ['http://[4000::1]/', 'reserved'],
];

describe('the fetch address classifier', () => {
  it(`refuses ${BYPASSES.length} bypass attempts, each with a clear reason`, () => {
    assert.ok(BYPASSES.length >= 30);
    for (const [url, category] of BYPASSES) {
      assert.throws(
        () => checkUrl(url, PUBLIC_ONLY),
        (err: unknown) => {
          assert.ok(err instanceof FetchError, `${url}: expected a FetchError, got ${String(err)}`);
          assert.equal(err.failure, 'blocked_address', `${url}: ${err.message}`);
          assert.match(err.message, /^refused to fetch /, url);
          return true;
        },
        `${url} must be refused`,
      );
      const host = new URL(url).hostname;
      const verdict = checkHost(host);
      assert.equal(verdict.verdict.allowed, false, `${url} (host ${host}) must be refused`);
      if (!verdict.verdict.allowed) {
        assert.equal(verdict.verdict.category, category, `${url}: ${verdict.verdict.reason}`);
        assert.ok(verdict.verdict.reason.length > 10, `${url}: the reason says what the address is`);
      }
    }
  });

  it('reads raw host spellings the way resolvers do, without a URL parser in front', () => {
    const cases: Array<[string, string | undefined]> = [
      ['2130706433', '127.0.0.1'],
      ['0x7f.1', '127.0.0.1'],
      ['0177.0.0.1', '127.0.0.1'],
      ['127.1', '127.0.0.1'],
      ['127.0.1', '127.0.0.1'],
      ['0x7F.0.0.1', '127.0.0.1'],
      ['127.0.0.1.', '127.0.0.1'],
      ['0x', '0.0.0.0'],
      ['1.2.3.4.5', undefined],
      ['08.0.0.1', undefined],
      ['256.0.0.1', undefined],
      ['1.2.65536', undefined],
      ['4294967296', undefined],
      ['99999999999999999999', undefined],
      ['1..2', undefined],
    ];
    for (const [input, expected] of cases) {
      const v = parseIPv4(input);
      assert.equal(v === undefined ? undefined : formatIp({ family: 4, value: v }), expected, input);
    }
    for (const raw of ['2130706433', '0x7f.1', '0177.0.0.1', '127.1', '127.0.0.1.', '[::1]', '::1', '[::ffff:127.0.0.1]', 'fe80::1%eth0', '[fe80::1%25eth0]', 'LocalHost']) {
      assert.equal(checkHost(raw).verdict.allowed, false, raw);
    }
    // A host that ends in a number but is no valid IPv4 address is refused, not looked up.
    for (const raw of ['08.0.0.1', '1.2.3.4.5', '256.1.1.1', 'evil.com.1', '0x7g.1']) {
      const v = checkHost(raw);
      assert.equal(v.verdict.allowed, false, raw);
      if (!v.verdict.allowed) assert.equal(v.verdict.category, 'malformed', raw);
    }
  });

  it('parses IPv6 forms: compression, IPv4 tails, zone ids and brackets', () => {
    assert.equal(formatIp({ family: 6, value: parseIPv6('0:0:0:0:0:0:0:1')! }), '::1');
    assert.equal(formatIp({ family: 6, value: parseIPv6('2001:DB8:0:0:1:0:0:1')! }), '2001:db8::1:0:0:1');
    assert.equal(formatIp({ family: 6, value: parseIPv6('::ffff:1.2.3.4')! }), '::ffff:102:304');
    assert.equal(formatIp({ family: 6, value: parseIPv6('1:2:3:4:5:6:1.2.3.4')! }), '1:2:3:4:5:6:102:304');
    assert.equal(parseIp('[fe80::1%eth0]')?.family, 6);
    for (const bad of ['1::2::3', ':::', '1:2:3:4:5:6:7:8:9', '12345::', '::ffff:1.2.3', '::ffff:01.2.3.4', 'g::1', '1:2:3:4:5:6:7::8']) {
      assert.equal(parseIPv6(bad), undefined, bad);
    }
  });

  it('allows public unicast addresses and ordinary names', () => {
    for (const ip of ['93.184.216.34', '8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '169.255.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1']) {
      const v = checkIp(ip);
      assert.equal(v.allowed, true, `${ip}: ${v.allowed ? '' : v.reason}`);
    }
    for (const name of ['example.com', 'EXAMPLE.com.', 'docs.python.org', 'xn--bcher-kva.example', 'a_b.example']) {
      const v = checkHost(name);
      assert.equal(v.kind, 'name', name);
      assert.equal(v.verdict.allowed, true, name);
    }
    assert.equal(checkUrl('https://example.com/page?q=1#frag', PUBLIC_ONLY).hostname, 'example.com');
  });

  it('refuses other schemes, credentials and malformed URLs before connecting', () => {
    const bad: Array<[string, RegExp]> = [
      ['file:///etc/passwd', /only http and https/],
      ['ftp://example.com/x', /only http and https/],
      ['gopher://example.com:70/', /only http and https/],
      ['javascript:alert(1)', /only http and https/],
      ['data:text/plain,hi', /only http and https/],
      ['http://user:pass@example.com/', /credentials/],
      ['http://example.com@127.0.0.1/', /credentials/],
      ['not a url', /not a valid URL/],
      ['http://[::1/', /not a valid URL/],
      ['http://08.0.0.1/', /not a valid URL/],
    ];
    for (const [url, message] of bad) {
      assert.throws(() => checkUrl(url, PUBLIC_ONLY), (err: unknown) => err instanceof FetchError && err.failure === 'bad_url' && message.test(err.message), url);
    }
  });

  it('checks every address a name resolves to, and refuses the name when any is not allowed', () => {
    assert.ok(Array.isArray(checkResolved('example.com', ['93.184.216.34', '2606:2800:220:1::1'])));
    const mixed = checkResolved('rebind.example', ['93.184.216.34', '127.0.0.1']);
    assert.ok(!Array.isArray(mixed));
    assert.match(mixed.refused, /rebind\.example resolves to 127\.0\.0\.1 is a loopback address/);
    const mapped = checkResolved('sneaky.example', ['::ffff:169.254.169.254']);
    assert.ok(!Array.isArray(mapped) && mapped.category === 'cloud_metadata');
    const none = checkResolved('empty.example', []);
    assert.ok(!Array.isArray(none) && /no address/.test(none.refused));
  });

  it('opens exactly what an explicit allow-list names, never metadata through a host name, never 0.0.0.0', () => {
    const policy = parseAllowList('127.0.0.1/32, 10.1.0.0/16 fd00:1234::/32 wiki.internal *.corp.example');
    assert.equal(policy.cidrs.length, 3);
    assert.deepEqual(policy.hosts, ['wiki.internal', '*.corp.example']);

    assert.deepEqual(checkIp('127.0.0.1', policy), { allowed: true, address: '127.0.0.1', allowListed: true });
    assert.equal(checkIp('::ffff:127.0.0.1', policy).allowed, true, 'an allowed IPv4 range covers its IPv4-mapped form');
    assert.equal(checkIp('127.0.0.2', policy).allowed, false);
    assert.equal(checkIp('10.1.200.3', policy).allowed, true);
    assert.equal(checkIp('10.2.0.1', policy).allowed, false);
    assert.equal(checkIp('fd00:1234::5', policy).allowed, true);
    assert.equal(checkIp('0.0.0.0', parseAllowList('0.0.0.0/0')).allowed, false, '0.0.0.0 reaches this machine: never allowed');
    assert.equal(checkIp('255.255.255.255', parseAllowList('0.0.0.0/0')).allowed, false);
    assert.equal(checkIp('224.0.0.1', parseAllowList('224.0.0.0/4')).allowed, false);

    // Allow-listed names may resolve to private addresses, but not to a metadata service.
    assert.ok(Array.isArray(checkResolved('wiki.internal', ['10.9.8.7'], policy)));
    assert.ok(Array.isArray(checkResolved('git.corp.example', ['192.168.0.4'], policy)));
    assert.ok(!Array.isArray(checkResolved('corp.example', ['192.168.0.4'], policy)), '*.corp.example does not cover corp.example itself');
    assert.ok(!Array.isArray(checkResolved('wiki.internal', ['169.254.169.254'], policy)));
    assert.ok(!Array.isArray(checkResolved('other.internal', ['10.9.8.7'], policy)));
    // An allow-listed literal also opens the URL check.
    assert.equal(checkUrl('http://127.0.0.1:8080/x', policy).port, '8080');

    // Without the allow-list the same addresses are refused.
    assert.equal(checkIp('127.0.0.1', PUBLIC_ONLY).allowed, false);
    assert.ok(!Array.isArray(checkResolved('wiki.internal', ['10.9.8.7'], PUBLIC_ONLY)));

    for (const bad of ['10.0.0.0/33', '::1/129', 'bad_host!', '1.2.3.4/x', '-lead.example', '127.1']) {
      assert.throws(() => parseAllowList(bad), /is not|bad prefix/, bad);
    }
    assert.deepEqual(parseAllowList(''), { cidrs: [], hosts: [] });
  });
});
