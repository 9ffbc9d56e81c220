import type { FastifyInstance } from 'fastify';
import { ragV1 } from '@chat/contracts';
import { AppError } from '@chat/errors';
import type { GatewayDeps } from '../deps.js';
import { jobToJson, personaToJson, settingsFromJson, type SettingsJson } from '../json.js';
import { IngestJob, JobAccepted, noContent, params, Persona, PersonaList, queryInt, settings } from '../schemas.js';
import { nullable } from './api-profiles.js';
import { intParam, ownerOf } from './util.js';

interface CreatePersonaBody {
  name: string;
  system_prompt: string;
  background?: string;
  api_profile_id?: string;
  settings?: SettingsJson;
}

type Nullable<T> = { [K in keyof T]?: T[K] | null };

interface PatchPersonaBody {
  name?: string;
  system_prompt?: string;
  background?: string;
  api_profile_id?: string | null;
  settings?: (Nullable<Omit<SettingsJson, 'retrieval'>> & { retrieval?: Nullable<NonNullable<SettingsJson['retrieval']>> | null }) | null;
}

/** personaRoutes: personas, their knowledge ingestion and the retrieval test. */
export function personaRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post(
    '/personas',
    {
      schema: {
        body: {
          type: 'object',
          required: ['name', 'system_prompt'],
          additionalProperties: false,
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 200 },
            system_prompt: { type: 'string', maxLength: 20_000 },
            background: { type: 'string', maxLength: 200_000 },
            api_profile_id: { type: 'string', minLength: 1, maxLength: 100 },
            settings,
          },
        },
        tags: ['personas'],
        summary: 'Create a persona (its background becomes knowledge, never prompt text)',
        response: { 201: Persona },
      },
    },
    async (req, reply) => {
      const body = req.body as CreatePersonaBody;
      const res = await deps.persona.createPersona({
        ownerId: ownerOf(req),
        name: body.name,
        systemPrompt: body.system_prompt,
        background: body.background ?? '',
        apiProfileId: body.api_profile_id,
        settings: settingsFromJson(body.settings),
      });
      return reply.code(201).send(personaToJson(res.persona));
    },
  );

  app.get(
    '/personas',
    {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { page_size: queryInt(200), page_token: { type: 'string', maxLength: 500 } },
        },
        tags: ['personas'],
        summary: 'List the owner’s personas, newest first',
        response: { 200: PersonaList },
      },
    },
    async (req) => {
      const q = req.query as { page_size?: string; page_token?: string };
      const res = await deps.persona.listPersonas({
        ownerId: ownerOf(req),
        pageSize: intParam('page_size', q.page_size, 1, 200) ?? 50,
        pageToken: q.page_token ?? '',
      });
      return { personas: res.personas.map(personaToJson), next_page_token: res.nextPageToken };
    },
  );

  app.get('/personas/:id', { schema: { tags: ['personas'], summary: 'One persona', params: params('id'), response: { 200: Persona } } }, async (req) => {
    const { id } = req.params as { id: string };
    const res = await deps.persona.getPersona({ ownerId: ownerOf(req), id });
    return personaToJson(res.persona);
  });

  // PATCH is a JSON merge patch (RFC 7386): given fields change, null resets a field that may be
  // unset (api_profile_id, settings and each setting), everything else stays.
  app.patch(
    '/personas/:id',
    {
      schema: {
        params: params('id'),
        body: {
          type: 'object',
          additionalProperties: false,
          minProperties: 1,
          properties: {
            name: { type: 'string', minLength: 1, maxLength: 200 },
            system_prompt: { type: 'string', maxLength: 20_000 },
            background: { type: 'string', maxLength: 200_000 },
            api_profile_id: nullable({ type: 'string', minLength: 1, maxLength: 100 }),
            settings: nullable({
              ...settings,
              properties: {
                ...Object.fromEntries(Object.entries(settings.properties).filter(([k]) => k !== 'retrieval').map(([k, v]) => [k, nullable(v)])),
                retrieval: nullable({
                  ...settings.properties.retrieval,
                  properties: Object.fromEntries(Object.entries(settings.properties.retrieval.properties).map(([k, v]) => [k, nullable(v)])),
                }),
              },
            }),
          },
        },
        tags: ['personas'],
        summary: 'Change a persona (JSON merge patch: null resets a field)',
        response: { 200: Persona },
      },
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const body = req.body as PatchPersonaBody;
      const clearFields: string[] = [];
      if (body.api_profile_id === null) clearFields.push('api_profile_id');
      let patchSettings: SettingsJson | undefined;
      if (body.settings === null) clearFields.push('settings');
      else if (body.settings) {
        const { retrieval, ...top } = body.settings;
        patchSettings = {};
        for (const [k, v] of Object.entries(top)) {
          if (v === null) clearFields.push(`settings.${k}`);
          else (patchSettings as Record<string, unknown>)[k] = v;
        }
        if (retrieval === null) clearFields.push('settings.retrieval');
        else if (retrieval) {
          patchSettings.retrieval = {};
          for (const [k, v] of Object.entries(retrieval)) {
            if (v === null) clearFields.push(`settings.retrieval.${k}`);
            else (patchSettings.retrieval as Record<string, unknown>)[k] = v;
          }
        }
      }
      const res = await deps.persona.updatePersona({
        ownerId: ownerOf(req),
        id,
        name: body.name,
        systemPrompt: body.system_prompt,
        background: body.background,
        apiProfileId: body.api_profile_id ?? undefined,
        settings: settingsFromJson(patchSettings),
        clearFields,
      });
      return personaToJson(res.persona);
    },
  );

  app.delete('/personas/:id', { schema: { tags: ['personas'], summary: 'Delete a persona (its knowledge and sessions go too)', params: params('id'), response: { 204: noContent } } }, async (req, reply) => {
    const { id } = req.params as { id: string };
    await deps.persona.deletePersona({ ownerId: ownerOf(req), id });
    return reply.code(204).send();
  });

  app.post(
    '/personas/:id/ingest_text',
    {
      schema: {
        params: params('id'),
        body: {
          type: 'object',
          required: ['text'],
          additionalProperties: false,
          properties: {
            text: { type: 'string', minLength: 1, maxLength: 5_000_000 },
            title: { type: 'string', maxLength: 500 },
            source: { type: 'string', maxLength: 2_000 },
          },
        },
        tags: ['knowledge'],
        summary: 'Ingest text into the persona’s knowledge (a job)',
        response: { 202: JobAccepted },
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const body = req.body as { text: string; title?: string; source?: string };
      // 404 for unknown or foreign personas before anything is queued.
      await deps.persona.getPersona({ ownerId: ownerOf(req), id });
      const res = await deps.rag.ingestText({
        ownerId: ownerOf(req),
        personaId: id,
        text: body.text,
        title: body.title ?? '',
        source: body.source ?? '',
        kind: ragV1.SourceKind.SOURCE_KIND_TEXT,
      });
      return reply.code(202).send({ job_id: res.jobId });
    },
  );

  app.post(
    '/personas/:id/ingest',
    {
      schema: {
        params: params('id'),
        body: {
          type: 'object',
          required: ['url'],
          additionalProperties: false,
          properties: {
            url: { type: 'string', minLength: 1, maxLength: 2_000 },
            title: { type: 'string', maxLength: 500 },
          },
        },
        tags: ['knowledge'],
        summary: 'Ingest the document at a URL (HTML or PDF, fetched SSRF-safely) into the persona’s knowledge (a job)',
        response: { 202: JobAccepted },
      },
    },
    async (req, reply) => {
      const { id } = req.params as { id: string };
      const body = req.body as { url: string; title?: string };
      // 404 for unknown or foreign personas before anything is queued; a URL rag refuses without
      // connecting (scheme, syntax, a literal private address) is 400 with the field url.
      await deps.persona.getPersona({ ownerId: ownerOf(req), id });
      const res = await deps.rag.ingestUrl({ ownerId: ownerOf(req), personaId: id, url: body.url, title: body.title ?? '' });
      return reply.code(202).send({ job_id: res.jobId });
    },
  );

  app.get('/ingest_jobs/:job_id', { schema: { tags: ['knowledge'], summary: 'An ingestion job’s status and progress', params: params('job_id'), response: { 200: IngestJob } } }, async (req) => {
    const { job_id } = req.params as { job_id: string };
    const res = await deps.rag.getIngestJob({ ownerId: ownerOf(req), jobId: job_id });
    if (!res.job) throw AppError.notFound('ingest job', job_id);
    return jobToJson(res.job);
  });
}
