import { MilvusClient, DataType, ConsistencyLevelEnum } from '@zilliz/milvus2-sdk-node';
const c = new MilvusClient({ address: '127.0.0.1:19599' });
const name = 'exp_' + Date.now();
const r1 = await c.createCollection({
  collection_name: name,
  fields: [
    { name: 'id', data_type: DataType.VarChar, is_primary_key: true, max_length: 256 },
    { name: 'persona_id', data_type: DataType.VarChar, max_length: 256 },
    { name: 'text', data_type: DataType.VarChar, max_length: 65535 },
    { name: 'vector', data_type: DataType.FloatVector, dim: 4 },
  ],
  consistency_level: 'Bounded',
});
console.log('create', r1.error_code, r1.reason);
const r2 = await c.createIndex({ collection_name: name, field_name: 'vector', index_type: 'HNSW', metric_type: 'COSINE', params: { M: 16, efConstruction: 200 } });
console.log('index', r2.error_code, r2.reason);
// search before load
const s0 = await c.search({ collection_name: name, data: [[1,0,0,0]], limit: 3, metric_type: 'COSINE', output_fields: ['id'] });
console.log('search before load', s0.status);
const r3 = await c.loadCollectionSync({ collection_name: name });
console.log('load', r3.error_code, r3.reason);
console.log('loadstate', (await c.getLoadState({collection_name: name})).state);
const u = await c.upsert({ collection_name: name, data: [
  { id: 'a', persona_id: 'p1', text: 'A', vector: [1,0,0,0] },
  { id: 'b', persona_id: 'p1', text: 'B', vector: [0,1,0,0] },
  { id: 'c', persona_id: 'p"2', text: 'C', vector: [1,0.1,0,0] },
]});
console.log('upsert', u.status.error_code, u.upsert_cnt);
for (const cl of ['Bounded', 'Session', 'Strong', 'Eventually']) {
  const t = Date.now();
  const s = await c.search({ collection_name: name, data: [[1,0,0,0]], limit: 3, metric_type: 'COSINE', output_fields: ['id','persona_id','text'], filter: 'persona_id == "p1"', consistency_level: cl });
  console.log(cl, Date.now()-t, 'ms', s.status.error_code, JSON.stringify(s.results));
}
const s2 = await c.search({ collection_name: name, data: [[1,0,0,0]], limit: 3, metric_type: 'COSINE', output_fields: ['id','persona_id'], filter: 'persona_id == "p\\"2"' });
console.log('escaped', s2.status.error_code, s2.status.reason, JSON.stringify(s2.results));
const s3 = await c.search({ collection_name: name, data: [[1,0,0,0]], limit: 3, metric_type: 'COSINE', output_fields: ['id','persona_id'], filter: 'persona_id == {p}', filter_params: { p: 'p"2' } });
console.log('templ', s3.status.error_code, s3.status.reason, JSON.stringify(s3.results));
const u2 = await c.upsert({ collection_name: name, data: [{ id: 'a', persona_id: 'p1', text: 'A2', vector: [1,0,0,0] }]});
const q = await c.query({ collection_name: name, filter: 'persona_id == "p1"', output_fields: ['id','text'] });
console.log('query', JSON.stringify(q.data));
const cnt = await c.count({ collection_name: name });
console.log('count', cnt.data);
const d = await c.delete({ collection_name: name, filter: 'persona_id == "p1"' });
console.log('delete', d.status.error_code, d.delete_cnt);
const s4 = await c.search({ collection_name: name, data: [[1,0,0,0]], limit: 3, metric_type: 'COSINE', output_fields: ['id'], filter: 'persona_id == "p1"' });
console.log('after delete', JSON.stringify(s4.results));
console.log('describe', JSON.stringify((await c.describeCollection({collection_name:name})).consistency_level));
console.log(process.argv[2] === 'keep' ? 'kept '+name : (await c.dropCollection({ collection_name: name })).error_code);
await c.closeConnection();
