import { MilvusClient } from '@zilliz/milvus2-sdk-node';
const c = new MilvusClient({ address: '127.0.0.1:19599' });
const name = process.argv[2];
if (process.argv[3] === 'release') console.log('release', (await c.releaseCollection({ collection_name: name })).error_code);
console.log('state', (await c.getLoadState({collection_name: name})).state);
try {
  const s = await c.search({ collection_name: name, data: [[1,0,0,0]], limit: 3, metric_type: 'COSINE', output_fields: ['id'] });
  console.log('search', JSON.stringify(s.status), s.results);
} catch (e) { console.log('threw', e.message, e.code); }
try {
  const q = await c.query({ collection_name: name, filter: 'id != ""', output_fields: ['id'] });
  console.log('query', JSON.stringify(q.status));
} catch (e) { console.log('threw', e.message); }
try {
  const s = await c.search({ collection_name: name, data: [[1,0,0,0]], limit: 3, metric_type: 'COSINE', output_fields: ['id'], filter: 'persona_id == {p}', exprValues: { p: 'p"2' } });
  console.log('templ', JSON.stringify(s.status), s.results);
} catch (e) { console.log('threw', e.message); }
await c.closeConnection();
