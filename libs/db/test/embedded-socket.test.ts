import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectDatabase, QueryTypes, startEmbeddedPostgres, type EmbeddedPostgres } from '../src/index.js';
import { configureLogger } from '@chat/logger';

const logger = configureLogger({ silent: true });

/**
 * The embedded PostgreSQL of `npm start` (what rag and every module use in `all` mode) is reached
 * over its unix-domain socket, in the data directory; TCP on 127.0.0.1 stays available; the data
 * directory survives a restart. (libs/db/src/embedded.ts; docs/decisions/0022.)
 */
describe('embedded PostgreSQL over a unix-domain socket', function () {
  this.timeout(120_000);
  let tmp: string;
  let server: EmbeddedPostgres | undefined;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'pg-sock-'));
    chmodSync(tmp, 0o755);
  });
  after(async () => {
    await server?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  const addressOf = async (url: string): Promise<string | null> => {
    const db = await connectDatabase(url, logger, 1);
    try {
      const [row] = await db.sequelize.query<{ addr: string | null }>('select host(inet_server_addr()) as addr', { type: QueryTypes.SELECT });
      return row!.addr;
    } finally {
      await db.close();
    }
  };

  it('connects this process over the socket and keeps TCP for others, across a restart of the same data directory', async () => {
    const dataDir = join(tmp, 'pg');
    server = await startEmbeddedPostgres({ dataDir, logger });
    assert.equal(server.socketDir, dataDir);
    assert.match(server.url, /\?host=/);
    assert.ok(existsSync(join(dataDir, 'PG_VERSION')), 'the cluster is in the data directory');
    // Over a unix-domain socket the server has no inet address.
    assert.equal(await addressOf(server.url), null);
    assert.equal(await addressOf(server.tcpUrl), '127.0.0.1');

    const db = await connectDatabase(server.url, logger, 1);
    await db.sequelize.query('create table kept (v text)');
    await db.sequelize.query("insert into kept values ('across restarts')");
    await db.close();
    await server.stop();
    server = undefined;

    server = await startEmbeddedPostgres({ dataDir, logger });
    const again = await connectDatabase(server.url, logger, 1);
    try {
      const rows = await again.sequelize.query<{ v: string }>('select v from kept', { type: QueryTypes.SELECT });
      assert.deepEqual(rows, [{ v: 'across restarts' }]);
    } finally {
      await again.close();
    }
  });

  it('uses TCP when the socket path would be too long', async () => {
    const deep = join(tmp, 'x'.repeat(60), 'y'.repeat(40), 'pg');
    const longServer = await startEmbeddedPostgres({ dataDir: deep, logger });
    try {
      assert.equal(longServer.socketDir, undefined);
      assert.equal(longServer.url, longServer.tcpUrl);
      assert.equal(await addressOf(longServer.url), '127.0.0.1');
    } finally {
      await longServer.stop();
    }
  });
});
