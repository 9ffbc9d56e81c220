import { randomUUID } from 'node:crypto';
import { AppError } from '@chat/errors';
import { QueryTypes, type Outbox, type Sequelize, type Transaction } from '@chat/db';
import { eventsV1 } from '@chat/contracts';
import { encodeEvent, traceHeaders, Topics } from '@chat/events';
import type { NewPersona, Persona, PersonaSettings } from '../../domain/persona.js';

/**
 * profileNotFound is the answer for an api_profile_id that names no profile of the owner: 404 for
 * the profile, with the field it came from.
 */
export function profileNotFound(id: string): AppError {
  const err = AppError.notFound('api profile', id);
  return new AppError(err.code, err.message, { reason: err.reason, details: { ...err.details, fields: { api_profile_id: 'names no API profile of yours' } } });
}

interface Row {
  id: string;
  owner_id: string;
  name: string;
  system_prompt: string;
  background: string;
  api_profile_id: string | null;
  settings: PersonaSettings;
  created_at: Date;
  updated_at: Date;
}

function toPersona(r: Row): Persona {
  return {
    id: r.id,
    ownerId: r.owner_id,
    name: r.name,
    systemPrompt: r.system_prompt,
    background: r.background,
    apiProfileId: r.api_profile_id,
    settings: r.settings ?? {},
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

/** PersonaRepository stores personas in PostgreSQL and writes their events to the outbox. */
export class PersonaRepository {
  constructor(
    private readonly sequelize: Sequelize,
    private readonly outbox: Outbox,
  ) {}

  /** create stores a persona and its PersonaUpserted event in one transaction. */
  async create(input: NewPersona): Promise<Persona> {
    const id = randomUUID();
    const persona = await this.sequelize.transaction(async (t) => {
      if (input.apiProfileId !== null) await this.checkProfile(t, input.ownerId, input.apiProfileId);
      const rows = await this.sequelize.query<Row>(
        `insert into persona.personas (id, owner_id, name, system_prompt, background, api_profile_id, settings)
         values (:id, :owner, :name, :prompt, :background, :profile, :settings) returning *`,
        {
          replacements: {
            id,
            owner: input.ownerId,
            name: input.name,
            prompt: input.systemPrompt,
            background: input.background,
            profile: input.apiProfileId,
            settings: JSON.stringify(input.settings),
          },
          type: QueryTypes.SELECT,
          transaction: t,
        },
      );
      const p = toPersona(rows[0]!);
      await this.upserted(t, p);
      return p;
    });
    this.outbox.kick();
    return persona;
  }

  /**
   * checkProfile makes sure the profile exists and belongs to the owner, and locks it FOR SHARE
   * until commit so that a concurrent DeleteApiProfile waits and then sees this persona.
   */
  private async checkProfile(t: Transaction, ownerId: string, profileId: string): Promise<void> {
    const rows = await this.sequelize.query<{ id: string }>('select id from persona.api_profiles where id = :id and owner_id = :owner for share', {
      replacements: { id: profileId, owner: ownerId },
      type: QueryTypes.SELECT,
      transaction: t,
    });
    if (rows.length === 0) throw profileNotFound(profileId);
  }

  private async upserted(t: Transaction, p: Persona): Promise<void> {
    const event = eventsV1.PersonaEvent.fromPartial({
      personaId: p.id,
      ownerId: p.ownerId,
      occurredAt: new Date(),
      kind: { $case: 'upserted', value: { background: p.background, name: p.name } },
    });
    await this.outbox.add(t, Topics.personaEvents, { key: p.id, value: encodeEvent(eventsV1.PersonaEvent, event), headers: traceHeaders({ 'event-type': 'persona.upserted' }) });
  }

  /**
   * update locks the persona, merges the patch (merge validates and may throw), checks a newly
   * named profile, and stores the persona with a PersonaUpserted event in one transaction (rag
   * re-ingests the background only when its content changed). undefined when not the owner's.
   */
  async update(ownerId: string, id: string, merge: (existing: Persona) => NewPersona): Promise<Persona | undefined> {
    const persona = await this.sequelize.transaction(async (t) => {
      const current = await this.sequelize.query<Row>('select * from persona.personas where id = :id and owner_id = :owner for update', {
        replacements: { id, owner: ownerId },
        type: QueryTypes.SELECT,
        transaction: t,
      });
      if (!current[0]) return undefined;
      const existing = toPersona(current[0]);
      const next = merge(existing);
      if (next.apiProfileId !== null && next.apiProfileId !== existing.apiProfileId) await this.checkProfile(t, ownerId, next.apiProfileId);
      const rows = await this.sequelize.query<Row>(
        `update persona.personas set name = :name, system_prompt = :prompt, background = :background, api_profile_id = :profile,
           settings = :settings, updated_at = now()
         where id = :id and owner_id = :owner returning *`,
        {
          replacements: {
            id,
            owner: ownerId,
            name: next.name,
            prompt: next.systemPrompt,
            background: next.background,
            profile: next.apiProfileId,
            settings: JSON.stringify(next.settings),
          },
          type: QueryTypes.SELECT,
          transaction: t,
        },
      );
      const p = toPersona(rows[0]!);
      await this.upserted(t, p);
      return p;
    });
    if (persona) this.outbox.kick();
    return persona;
  }

  /**
   * delete removes the persona with a PersonaDeleted event in one transaction; rag drops the
   * persona's knowledge and the session service its sessions when they consume it.
   */
  async delete(ownerId: string, id: string): Promise<boolean> {
    const deleted = await this.sequelize.transaction(async (t) => {
      const rows = await this.sequelize.query<{ id: string }>('delete from persona.personas where id = :id and owner_id = :owner returning id', {
        replacements: { id, owner: ownerId },
        type: QueryTypes.SELECT,
        transaction: t,
      });
      if (rows.length === 0) return false;
      const event = eventsV1.PersonaEvent.fromPartial({ personaId: id, ownerId, occurredAt: new Date(), kind: { $case: 'deleted', value: {} } });
      await this.outbox.add(t, Topics.personaEvents, { key: id, value: encodeEvent(eventsV1.PersonaEvent, event), headers: traceHeaders({ 'event-type': 'persona.deleted' }) });
      return true;
    });
    if (deleted) this.outbox.kick();
    return deleted;
  }

  /** get returns the persona when it exists and belongs to the owner. */
  async get(ownerId: string, id: string): Promise<Persona | undefined> {
    const rows = await this.sequelize.query<Row>('select * from persona.personas where id = :id and owner_id = :owner', {
      replacements: { id, owner: ownerId },
      type: QueryTypes.SELECT,
    });
    return rows[0] ? toPersona(rows[0]) : undefined;
  }

  /** list returns one page of the owner's personas, newest first, and the cursor of the next page. */
  async list(ownerId: string, pageSize: number, cursor?: { createdAt: Date; id: string }): Promise<{ personas: Persona[]; next?: { createdAt: Date; id: string } }> {
    const rows = await this.sequelize.query<Row>(
      `select * from persona.personas where owner_id = :owner
       ${cursor ? 'and (created_at, id) < (:cursorAt, :cursorId)' : ''}
       order by created_at desc, id desc limit :limit`,
      { replacements: { owner: ownerId, cursorAt: cursor?.createdAt ?? null, cursorId: cursor?.id ?? null, limit: pageSize + 1 }, type: QueryTypes.SELECT },
    );
    const personas = rows.slice(0, pageSize).map(toPersona);
    const last = personas[personas.length - 1];
    return { personas, next: rows.length > pageSize && last ? { createdAt: last.createdAt, id: last.id } : undefined };
  }
}
