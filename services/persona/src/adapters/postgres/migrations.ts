import { outboxClaimMigration, outboxMigration, type Migration } from '@chat/db';

/** SCHEMA is the persona service's own PostgreSQL schema. */
export const SCHEMA = 'persona';

/** The persona service's migrations, applied in order at start. */
export const migrations: Migration[] = [
  outboxMigration(SCHEMA),
  {
    id: '001_personas',
    up: `create table persona.personas (
      id uuid primary key,
      owner_id text not null,
      name text not null,
      system_prompt text not null,
      background text not null default '',
      api_profile_id uuid,
      settings jsonb not null default '{}'::jsonb,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    );
    create index personas_owner_created on persona.personas (owner_id, created_at desc, id desc)`,
  },
  {
    // api_key_* hold the AES-256-GCM sealed key (associated data = id); the plaintext is never stored.
    id: '002_api_profiles',
    up: `create table persona.api_profiles (
      id uuid primary key,
      owner_id text not null,
      name text not null,
      provider text not null,
      base_url text not null,
      model text not null,
      embedding_model text,
      embedding_base_url text,
      limits jsonb not null default '{}'::jsonb,
      api_key_ciphertext bytea,
      api_key_iv bytea,
      api_key_tag bytea,
      api_key_version text,
      api_key_fingerprint text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      constraint api_profiles_key_complete check (
        (api_key_ciphertext is null) = (api_key_iv is null) and (api_key_iv is null) = (api_key_tag is null)
        and (api_key_tag is null) = (api_key_version is null) and (api_key_version is null) = (api_key_fingerprint is null))
    );
    create index api_profiles_owner_created on persona.api_profiles (owner_id, created_at desc, id desc);
    create index api_profiles_key_version on persona.api_profiles (api_key_version) where api_key_version is not null;
    create index personas_api_profile on persona.personas (api_profile_id) where api_profile_id is not null`,
  },
  {
    // The gateway's API keys (SHA-256 digest only, never the key) and used ws_token nonces
    // (single use across gateway replicas); see docs/decisions/0014-api-keys-and-ws-tokens-store.md.
    id: '003_gateway_api_keys',
    up: `create table persona.api_keys (
      id uuid primary key,
      owner_id text not null,
      name text not null,
      prefix text not null,
      digest bytea not null unique,
      created_at timestamptz not null default now(),
      revoked_at timestamptz
    );
    create index api_keys_owner_created on persona.api_keys (owner_id, created_at desc, id desc);
    create table persona.ws_token_nonces (
      nonce text primary key,
      expires_at timestamptz not null
    );
    create index ws_token_nonces_expires on persona.ws_token_nonces (expires_at)`,
  },
  outboxClaimMigration(SCHEMA),
];
