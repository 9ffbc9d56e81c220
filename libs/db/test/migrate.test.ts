import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configureLogger, getLogger } from '@chat/logger';
import { connectDatabase, isolatedDatabase, migrate, QueryTypes, startEmbeddedPostgres, type Database, type EmbeddedPostgres, type IsolatedDatabase, type Migration } from '../src/index.js';

configureLogger({ silent: true });
const logger = getLogger('test');

describe('migrate (on real PostgreSQL)', function () {
  this.timeout(60_000);
  let tmp = '';
  let embedded: EmbeddedPostgres | undefined;
  let url = '';
  let isolated: IsolatedDatabase | undefined;
  const open: Database[] = [];

  before(async () => {
    if (process.env.DATABASE_URL) {
      isolated = await isolatedDatabase(process.env.DATABASE_URL, 'migrate_test', logger);
      url = isolated.url;
    }
    else {
      tmp = mkdtempSync(join(tmpdir(), 'migrate-'));
      chmodSync(tmp, 0o755);
      embedded = await startEmbeddedPostgres({ dataDir: join(tmp, 'pg'), logger });
      url = embedded.url;
    }
  });
  after(async () => {
    for (const db of open) await db.close();
    await isolated?.drop();
    await embedded?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });
  const connect = async () => {
    const db = await connectDatabase(url, logger, 2);
    open.push(db);
    return db;
  };

  const migrations: Migration[] = [
    { id: '001_things', up: 'create table mtest.things (id int primary key, name text not null)' },
    { id: '002_thing_color', up: "alter table mtest.things add column color text not null default 'red'" },
  ];

  it('applies each migration once when two replicas start at the same moment', async () => {
    const [a, b] = [await connect(), await connect()];
    const [ra, rb] = await Promise.all([migrate(a.sequelize, 'mtest', migrations, logger), migrate(b.sequelize, 'mtest', migrations, logger)]);
    // One replica applied both; the other waited on the lock and found nothing left to do.
    assert.deepEqual([...ra, ...rb].sort(), ['001_things', '002_thing_color']);
    assert.ok(ra.length === 0 || rb.length === 0);
    const rows = await a.sequelize.query<{ id: string }>('select id from mtest.schema_migrations order by id', { type: QueryTypes.SELECT });
    assert.deepEqual(rows.map((r) => r.id), ['001_things', '002_thing_color']);
  });

  it('is idempotent, and applies only what is new', async () => {
    const db = await connect();
    assert.deepEqual(await migrate(db.sequelize, 'mtest', migrations, logger), []);
    const more = [...migrations, { id: '003_index', up: 'create index things_name on mtest.things (name)' }];
    assert.deepEqual(await migrate(db.sequelize, 'mtest', more, logger), ['003_index']);
  });

  it('leaves nothing half-applied when a migration fails', async () => {
    const db = await connect();
    const bad = [
      { id: '101_ok', up: 'create table mtest2.a (id int)' },
      { id: '102_broken', up: 'create table mtest2.b (id int' },
    ];
    await assert.rejects(migrate(db.sequelize, 'mtest2', bad, logger));
    const schema = await db.sequelize.query("select 1 from information_schema.schemata where schema_name = 'mtest2'", { type: QueryTypes.SELECT });
    assert.equal(schema.length, 0, 'the whole run rolled back');
  });
});
