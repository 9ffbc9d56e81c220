import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Api, assertError, Frames, openSocket, waitFor } from './harness.js';

/** Keys of two owners, so foreign ids can be tried. */
export const OWNER_A_KEY = 'e2e-key-owner-a-0123456789';
export const OWNER_B_KEY = 'e2e-key-owner-b-9876543210';
export const API_KEYS = `owner-a:${OWNER_A_KEY},owner-b:${OWNER_B_KEY}`;

/**
 * runLifecycle walks the whole message lifecycle through the public API and asserts every step:
 * persona (background becomes knowledge) → ingest_text → session → ws_token → socket → POST message
 * → reply.delta… reply.completed grounded in the knowledge → GET session shows both messages.
 */
export async function runLifecycle(httpBase: string): Promise<void> {
  const api = new Api(httpBase, OWNER_A_KEY);
  const wsBase = httpBase.replace(/^http/, 'ws');
  const marker = randomUUID().slice(0, 8);

  const created = await api.call('POST', '/api/personas', {
    name: `Island guide ${marker}`,
    system_prompt: 'You are a friendly guide to the island of Velmora. Answer briefly.',
    background: `The lighthouse of Velmora was built in 1871 and its keeper is Captain Orla Brennick ${marker}.`,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const persona = created.body;
  assert.match(persona.id, /^[0-9a-f-]{36}$/);
  assert.equal(persona.background.includes('Orla Brennick'), true);
  assert.ok(!persona.system_prompt.includes('Orla Brennick'), 'background must not be pasted into the system prompt');

  const ingest = await api.call('POST', `/api/personas/${persona.id}/ingest_text`, {
    text: `Velmora island soup. The secret ingredient of the island soup is smoked seaweed harvested at dawn ${marker}. It is served with rye bread.`,
    title: 'Velmora cooking',
  });
  assert.equal(ingest.status, 202, JSON.stringify(ingest.body));
  const job = await waitFor('the ingest job to succeed', async () => {
    const r = await api.call('GET', `/api/ingest_jobs/${ingest.body.job_id}`);
    assert.equal(r.status, 200);
    assert.notEqual(r.body.status, 'failed', JSON.stringify(r.body));
    return r.body.status === 'succeeded' ? r.body : undefined;
  });
  assert.ok(job.progress.chunks_total >= 1);
  assert.equal(job.progress.chunks_done, job.progress.chunks_total);

  // The background was ingested from the persona event: it is searchable knowledge.
  await waitFor('the background to become searchable', async () => {
    const r = await api.call('POST', `/api/personas/${persona.id}/search`, { query: 'who is the lighthouse keeper', top_k: 3 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body.results.some((x: { text: string }) => x.text.includes('Orla Brennick')) ? true : undefined;
  });

  const s = await api.call('POST', '/api/sessions', { persona_id: persona.id, title: 'Soup questions' });
  assert.equal(s.status, 201, JSON.stringify(s.body));
  const session = s.body;
  assert.equal(session.persona_id, persona.id);

  const tok = await api.call('POST', `/api/sessions/${session.id}/ws_token`);
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  assert.ok(Date.parse(tok.body.expires_at) - Date.now() <= 60_000);
  const ws = await openSocket(wsBase, session.id, tok.body.ws_token);
  const frames = new Frames(ws);
  try {
    const sent = await api.call('POST', `/api/sessions/${session.id}/messages`, { content: 'What is the secret ingredient of the island soup?' });
    assert.equal(sent.status, 202, JSON.stringify(sent.body));
    const { message_id, reply_id } = sent.body;
    assert.ok(message_id && reply_id);

    const done = await frames.until((f) => f.type === 'reply.completed' && f.reply_id === reply_id);
    const deltas = frames.frames.filter((f) => f.type === 'reply.delta' && f.reply_id === reply_id);
    assert.ok(deltas.length >= 1, 'expected reply.delta frames before reply.completed');
    const seqs = [...deltas.map((d) => d.seq), done.seq];
    for (let i = 1; i < seqs.length; i++) assert.equal(seqs[i], seqs[i - 1] + 1, `seq must increase by one: ${seqs}`);
    assert.equal(deltas.map((d) => d.text).join(''), done.content, 'the deltas add up to the final content');
    assert.match(done.content, /\[development model\]/);
    assert.match(done.content, /smoked seaweed/, 'the reply uses the retrieved knowledge');
    assert.ok(done.citations.length >= 1);
    assert.equal(typeof done.citations[0].source_id, 'string');

    // Both messages are durable and visible in the session; the reply's row exists from the send
    // on (pending, then streaming) and is final once the session service stored the outcome.
    const view = await waitFor('the assistant message to be stored', async () => {
      const r = await api.call('GET', `/api/sessions/${session.id}`);
      assert.equal(r.status, 200);
      const reply = r.body.messages.find((m: { id: string }) => m.id === reply_id);
      assert.ok(reply, 'the reply row exists from the send on');
      return ['completed', 'failed', 'cancelled'].includes(reply.status) ? r.body : undefined;
    });
    const user = view.messages.find((m: { id: string }) => m.id === message_id);
    const assistant = view.messages.find((m: { id: string }) => m.id === reply_id);
    assert.equal(user.role, 'user');
    assert.equal(user.content, 'What is the secret ingredient of the island soup?');
    assert.equal(assistant.role, 'assistant');
    assert.equal(assistant.status, 'completed');
    assert.equal(assistant.content, done.content);
    assert.ok(assistant.citations.length >= 1);
  } finally {
    ws.close();
  }

  await checkBadInput(httpBase, wsBase, persona.id, session.id, ingest.body.job_id);
}

/** checkBadInput sends garbage to every endpoint and expects precise 4xx errors. */
async function checkBadInput(httpBase: string, wsBase: string, personaId: string, sessionId: string, jobId: string): Promise<void> {
  const api = new Api(httpBase, OWNER_A_KEY);
  const other = new Api(httpBase, OWNER_B_KEY);
  const anon = new Api(httpBase, undefined);
  const unknown = randomUUID();

  assertError(await anon.call('GET', '/api/personas'), 401, 'unauthenticated');
  assertError(await new Api(httpBase, 'not-a-key').call('GET', `/api/sessions/${sessionId}`), 401, 'unauthenticated');

  // Malformed JSON, missing fields, wrong types, extra fields.
  assertError(await api.call('POST', '/api/personas', '{"name": "x",'), 400);
  assertError(await api.call('POST', '/api/personas', { system_prompt: 'p' }), 400);
  assertError(await api.call('POST', '/api/personas', { name: 42, system_prompt: 'p' }), 400);
  assertError(await api.call('POST', '/api/personas', { name: 'x', system_prompt: 'p', settings: { temperature: 'hot' } }), 400);
  assertError(await api.call('POST', `/api/personas/${personaId}/ingest_text`, { text: '' }), 400);
  assertError(await api.call('POST', `/api/personas/${personaId}/ingest_text`, { text: 12 }), 400);
  assertError(await api.call('POST', '/api/sessions', {}), 400);
  assertError(await api.call('POST', '/api/sessions', { persona_id: ['x'] }), 400);
  assertError(await api.call('POST', `/api/sessions/${sessionId}/messages`, '{not json'), 400);
  assertError(await api.call('POST', `/api/sessions/${sessionId}/messages`, { content: '' }), 400);
  assertError(await api.call('POST', `/api/sessions/${sessionId}/messages`, { content: 'hi', priority: 'urgent' }), 400);
  assertError(await api.call('POST', `/api/sessions/${sessionId}/messages`, { content: 'x'.repeat(2 * 1024 * 1024) }), 413, 'too_large');

  // Unknown ids and other owners' ids answer 404 alike.
  assertError(await api.call('GET', `/api/personas/${unknown}`), 404, 'not_found');
  assertError(await api.call('GET', '/api/personas/not-a-uuid'), 404, 'not_found');
  assertError(await other.call('GET', `/api/personas/${personaId}`), 404, 'not_found');
  assertError(await other.call('POST', `/api/personas/${personaId}/ingest_text`, { text: 'intrusion' }), 404, 'not_found');
  assertError(await api.call('POST', '/api/sessions', { persona_id: unknown }), 404, 'not_found');
  assertError(await other.call('POST', '/api/sessions', { persona_id: personaId }), 404, 'not_found');
  assertError(await api.call('GET', `/api/sessions/${unknown}`), 404, 'not_found');
  assertError(await other.call('GET', `/api/sessions/${sessionId}`), 404, 'not_found');
  assertError(await other.call('POST', `/api/sessions/${sessionId}/messages`, { content: 'hello' }), 404, 'not_found');
  assertError(await other.call('POST', `/api/sessions/${sessionId}/ws_token`), 404, 'not_found');
  assertError(await other.call('GET', `/api/ingest_jobs/${jobId}`), 404, 'not_found');
  assertError(await api.call('GET', `/api/ingest_jobs/${unknown}`), 404, 'not_found');

  // A ws_token works for its own session only, and only once.
  const tok = (await api.call('POST', `/api/sessions/${sessionId}/ws_token`)).body.ws_token as string;
  const other2 = await api.call('POST', '/api/sessions', { persona_id: personaId });
  await assert.rejects(openSocket(wsBase, other2.body.id, tok), (e: { status?: number }) => e.status === 401 || e.status === 403);
  await assert.rejects(openSocket(wsBase, sessionId, undefined), (e: { status?: number }) => e.status === 401);
  await assert.rejects(openSocket(wsBase, sessionId, `${tok}x`), (e: { status?: number }) => e.status === 401);

  // A failed request wrote nothing: the session still holds exactly the two messages.
  const view = await api.call('GET', `/api/sessions/${sessionId}`);
  assert.equal(view.body.messages.length, 2);
}
