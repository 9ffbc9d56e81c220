import { randomUUID } from 'node:crypto';
import { QueryTypes, type Outbox, type Sequelize } from '@chat/db';
import { eventsV1 } from '@chat/contracts';
import { encodeEvent, traceHeaders, Topics } from '@chat/events';
import type { NewPersona, Persona, PersonaSettings } from '../../domain/persona.js';

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
      const event = eventsV1.PersonaEvent.fromPartial({
        personaId: p.id,
        ownerId: p.ownerId,
        occurredAt: new Date(),
        kind: { $case: 'upserted', value: { background: p.background, name: p.name } },
      });
      await this.outbox.add(t, Topics.personaEvents, { key: p.id, value: encodeEvent(eventsV1.PersonaEvent, event), headers: traceHeaders({ 'event-type': 'persona.upserted' }) });
      return p;
    });
    this.outbox.kick();
    return persona;
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
