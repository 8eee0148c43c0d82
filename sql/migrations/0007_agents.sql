-- 0007_agents: agents — enrollment, identity, the live connection, and the
-- durable Hub → Agent outbox through which backup runs, snapshot deletes and
-- incomplete cleanups of agent-held data are dispatched (DESIGN §6, §8;
-- issue 8; protocol in docs/agent-protocol.md, operations in docs/agents.md).
--
-- Identity. An admin mints an enrollment token (bastion.create_enrollment_token:
-- shown once, SHA-256 kept, TTL and a number of uses). The gateway's
-- POST /agent/enroll exchanges it (bastion_private.enroll_agent, one
-- transaction) for an agent id and key; only the key's SHA-256 is kept, in
-- bastion_private.agent_keys, which no application role can read. Keys and
-- tokens are generated here, as API tokens are (0002), so a DBA can mint them.
--
-- Connection. Several gateways may share one database. Each registers in
-- bastion_private.gateways and heartbeats every 10 s; an agent is online when
-- its row names a gateway (connected_gateway, connected_session = the live
-- socket) whose heartbeat is fresh and it is not revoked. One NOTIFY channel,
-- `bastion_agents`, carries small JSON payloads naming the agent:
--   {"op":"outbox","agent_id":…}              new work for the agent
--   {"op":"connected","agent_id":…,"session":…} a new socket replaced older ones
--   {"op":"revoked","agent_id":…}              close its socket now
--   {"op":"key_rotated","agent_id":…}          close its socket now
-- Every gateway listens; the one holding the agent's socket acts. A broadcast
-- (rather than a channel per gateway) cannot miss an agent that moved to
-- another gateway between a lookup and the NOTIFY.
--
-- Dispatch. Workers still own the queues' state machines (0004, 0006): a
-- claimed attempt of a task whose executor is an agent is handed over by
-- bastion_private.agent_dispatch_tasks: an outbox row (the attempt's payload,
-- never credentials), the task's claimed_by becomes 'agent:<agent id>', a
-- `dispatched` event, NOTIFY. The gateway heartbeats the attempt while the
-- agent reports and applies the agent's result through
-- bastion_private.task_finish as worker 'agent:<id>' with the attempt number
-- taken from the outbox row — so a late, duplicate or forged result of an
-- attempt that is no longer running for that agent changes nothing. Backup
-- runs are dispatched by bastion_private.agent_dispatch_run (start_run + outbox
-- row in one transaction); their heartbeat comes from the agent's progress.
--
-- Lock order (deadlock freedom): outbox rows before task rows before
-- snapshot rows; task rows in run id order (as 0004 does).
--
-- Who may call what: admins create/revoke enrollment tokens, rename, rotate
-- keys of and revoke agents; everyone reads agents (and the outbox, which
-- holds no credentials). Everything else is for the gateway and workers, which
-- connect as the schema owner.

-- ---------------------------------------------------------------------------
-- Types

create type bastion.agent_message_kind as enum ('backup_run', 'snapshot_delete', 'incomplete_cleanup');
comment on type bastion.agent_message_kind is 'What an outbox message asks an agent to do: execute a backup run, delete a local_dir snapshot, or clean up a local partial run.';

create type bastion.created_enrollment_token as (
  id uuid,
  token text,
  expires_at timestamptz,
  remaining_uses integer,
  note text
);
comment on type bastion.created_enrollment_token is 'A new enrollment token: `token` is shown this once and cannot be read again.';

create type bastion.enrollment_token_info as (
  id uuid,
  token_hint text,
  note text,
  created_at timestamptz,
  created_by uuid,
  expires_at timestamptz,
  uses_allowed integer,
  remaining_uses integer,
  last_used_at timestamptz,
  revoked_at timestamptz
);
comment on type bastion.enrollment_token_info is 'An enrollment token as lists show it (never the token or its hash).';

create type bastion.agent_key as (
  agent_id uuid,
  agent_key text
);
comment on type bastion.agent_key is 'A new agent key: shown this once; the agent stores it in its data directory (agent.json).';

-- ---------------------------------------------------------------------------
-- Tables

create table bastion_private.gateways (
  id uuid primary key,
  started_at timestamptz not null default now(),
  heartbeat_at timestamptz not null default now(),
  host text constraint gateways_host_length check (char_length(host) <= 255),
  pid integer,
  version text constraint gateways_version_length check (char_length(version) <= 64)
);
create index gateways_heartbeat_idx on bastion_private.gateways (heartbeat_at);
comment on table bastion_private.gateways is 'Gateway processes sharing this database; each holds the WebSocket connections of some agents. A gateway whose heartbeat is older than 30 s is dead: its agents are offline.';
comment on column bastion_private.gateways.id is 'Random id of one gateway process run.';
comment on column bastion_private.gateways.started_at is 'When the gateway registered.';
comment on column bastion_private.gateways.heartbeat_at is 'Last heartbeat (every 10 s).';
comment on column bastion_private.gateways.host is 'Host name of the gateway process (diagnostics).';
comment on column bastion_private.gateways.pid is 'Process id of the gateway process (diagnostics).';
comment on column bastion_private.gateways.version is 'Bastion version of the gateway process.';

create table bastion.agents (
  id uuid primary key default gen_random_uuid(),
  name text not null
    constraint agents_name_format check (char_length(name) between 1 and 64 and name = btrim(name) and name !~ '[[:cntrl:]]'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  enrolled_by uuid references bastion.users (id) on delete set null,
  enrollment_token_id uuid,
  version text constraint agents_version_length check (char_length(version) <= 64),
  capabilities jsonb not null default '{}'
    constraint agents_capabilities_object check (jsonb_typeof(capabilities) = 'object' and octet_length(capabilities::text) <= 16384),
  last_seen_at timestamptz,
  connected_gateway uuid,
  connected_session uuid,
  connected_at timestamptz,
  disconnected_at timestamptz,
  key_rotated_at timestamptz,
  revoked_at timestamptz,
  revoked_by uuid references bastion.users (id) on delete set null,
  constraint agents_connection_fields_together check ((connected_gateway is null) = (connected_session is null)),
  constraint agents_connected_has_time check (connected_gateway is null or connected_at is not null),
  constraint agents_revoked_not_connected check (revoked_at is null or connected_gateway is null),
  constraint agents_revoked_by_needs_revoked_at check (revoked_by is null or revoked_at is not null)
);
create unique index agents_active_name_key on bastion.agents (lower(name)) where revoked_at is null;
create index agents_connected_gateway_idx on bastion.agents (connected_gateway) where connected_gateway is not null;
comment on table bastion.agents is 'Enrolled agents: executors on other machines that run backups and delete or clean up the data they hold (node_id = the agent id). Keys live in bastion_private.agent_keys.';
comment on column bastion.agents.id is 'Agent id; also its node id in jobs, runs, snapshots and secrets.';
comment on column bastion.agents.name is 'Name, unique among agents that are not revoked (case-insensitive).';
comment on column bastion.agents.created_at is 'Enrollment time.';
comment on column bastion.agents.updated_at is 'Last change by an admin or a hello.';
comment on column bastion.agents.enrolled_by is 'Admin who created the enrollment token the agent used.';
comment on column bastion.agents.enrollment_token_id is 'The enrollment token the agent used (tokens are pruned 30 days after they end).';
comment on column bastion.agents.version is 'Bastion version the agent reported in its last hello.';
comment on column bastion.agents.capabilities is 'What the agent reported it can do in its last hello: {kinds, targets, formats, os, arch, hostname}.';
comment on column bastion.agents.last_seen_at is 'Last frame from the agent (written at most every 10 s).';
comment on column bastion.agents.connected_gateway is 'Gateway holding the agent''s live socket (bastion_private.gateways), or NULL when disconnected.';
comment on column bastion.agents.connected_session is 'Id of the live socket; a newer socket replaces it, a close of an older one changes nothing.';
comment on column bastion.agents.connected_at is 'When the live socket (or the last one) was opened.';
comment on column bastion.agents.disconnected_at is 'When the last socket closed.';
comment on column bastion.agents.key_rotated_at is 'When an admin last replaced the key.';
comment on column bastion.agents.revoked_at is 'Set when revoked: the key is refused, the socket closed, work in flight failed; the row stays for history.';
comment on column bastion.agents.revoked_by is 'Admin who revoked the agent.';

create table bastion_private.agent_keys (
  agent_id uuid primary key references bastion.agents (id) on delete cascade,
  key_hash bytea not null constraint agent_keys_key_hash_length check (octet_length(key_hash) = 32),
  key_hint text not null constraint agent_keys_key_hint_format check (key_hint ~ '^bak_[A-Za-z0-9_-]{4}$'),
  created_at timestamptz not null default now()
);
create unique index agent_keys_key_hash_key on bastion_private.agent_keys (key_hash);
comment on table bastion_private.agent_keys is 'Agent keys (bearer credential of /agent/ws): only the SHA-256 of the key text.';
comment on column bastion_private.agent_keys.agent_id is 'The agent.';
comment on column bastion_private.agent_keys.key_hash is 'SHA-256 of the key text (bak_ + 43 base64url characters).';
comment on column bastion_private.agent_keys.key_hint is 'First 8 characters of the key, to tell keys apart; not enough to guess it.';
comment on column bastion_private.agent_keys.created_at is 'When this key was issued (enrollment or rotation).';

create table bastion_private.enrollment_tokens (
  id uuid primary key default gen_random_uuid(),
  token_hash bytea not null constraint enrollment_tokens_token_hash_length check (octet_length(token_hash) = 32),
  token_hint text not null constraint enrollment_tokens_token_hint_format check (token_hint ~ '^bet_[A-Za-z0-9_-]{4}$'),
  note text constraint enrollment_tokens_note_length check (char_length(note) <= 200),
  created_at timestamptz not null default now(),
  created_by uuid references bastion.users (id) on delete set null,
  expires_at timestamptz not null,
  uses_allowed integer not null constraint enrollment_tokens_uses_allowed_range check (uses_allowed between 1 and 1000),
  remaining_uses integer not null,
  last_used_at timestamptz,
  revoked_at timestamptz,
  revoked_by uuid references bastion.users (id) on delete set null,
  constraint enrollment_tokens_remaining_range check (remaining_uses between 0 and uses_allowed),
  constraint enrollment_tokens_expiry_after_creation check (expires_at > created_at),
  constraint enrollment_tokens_revoked_by_needs_revoked_at check (revoked_by is null or revoked_at is not null)
);
create unique index enrollment_tokens_token_hash_key on bastion_private.enrollment_tokens (token_hash);
comment on table bastion_private.enrollment_tokens is 'One-time (or few-times) secrets an agent exchanges for its identity. Only the SHA-256 is kept; rows stay after use or expiry (so a late attempt gets a precise error) and are pruned 30 days later.';
comment on column bastion_private.enrollment_tokens.id is 'Token id (lists, revoke).';
comment on column bastion_private.enrollment_tokens.token_hash is 'SHA-256 of the token text (bet_ + 43 base64url characters).';
comment on column bastion_private.enrollment_tokens.token_hint is 'First 8 characters of the token.';
comment on column bastion_private.enrollment_tokens.note is 'What the token is for (e.g. the machine it was made for).';
comment on column bastion_private.enrollment_tokens.created_at is 'Creation time.';
comment on column bastion_private.enrollment_tokens.created_by is 'Admin who created it; becomes agents.enrolled_by.';
comment on column bastion_private.enrollment_tokens.expires_at is 'Refused (enrollment_token_expired) from this time on.';
comment on column bastion_private.enrollment_tokens.uses_allowed is 'How many agents may enroll with it (1–1000).';
comment on column bastion_private.enrollment_tokens.remaining_uses is 'Enrollments left; 0 = used up (enrollment_token_exhausted).';
comment on column bastion_private.enrollment_tokens.last_used_at is 'Last successful enrollment with it.';
comment on column bastion_private.enrollment_tokens.revoked_at is 'Set when an admin revoked it (enrollment_token_revoked).';
comment on column bastion_private.enrollment_tokens.revoked_by is 'Admin who revoked it.';

create table bastion.agent_outbox (
  id uuid primary key default gen_random_uuid(),
  agent_id uuid not null references bastion.agents (id) on delete cascade,
  kind bastion.agent_message_kind not null,
  queue text constraint agent_outbox_queue_format check (queue ~ '^[a-z][a-z0-9_]{0,62}$'),
  run_id uuid not null,
  attempt integer constraint agent_outbox_attempt_positive check (attempt >= 1),
  payload jsonb not null constraint agent_outbox_payload_object check (jsonb_typeof(payload) = 'object' and octet_length(payload::text) <= 524288),
  created_at timestamptz not null default now(),
  delivered_at timestamptz,
  delivered_session uuid,
  delivery_count integer not null default 0 constraint agent_outbox_delivery_count_nonnegative check (delivery_count >= 0),
  acked_at timestamptz,
  completed_at timestamptz,
  result jsonb constraint agent_outbox_result_object check (jsonb_typeof(result) = 'object' and octet_length(result::text) <= 131072),
  constraint agent_outbox_task_fields check ((kind = 'backup_run') = (queue is null and attempt is null)),
  constraint agent_outbox_result_iff_completed check ((completed_at is null) = (result is null)),
  constraint agent_outbox_delivered_fields check ((delivered_at is null) = (delivery_count = 0) and (delivered_session is null or delivered_at is not null)),
  constraint agent_outbox_acked_after_delivery check (acked_at is null or delivered_at is not null)
);
create index agent_outbox_open_idx on bastion.agent_outbox (agent_id, created_at) where completed_at is null;
create unique index agent_outbox_one_open_per_work_key on bastion.agent_outbox (coalesce(queue, ''), run_id) where completed_at is null;
create index agent_outbox_completed_idx on bastion.agent_outbox (completed_at) where completed_at is not null;
create index agent_outbox_run_idx on bastion.agent_outbox (run_id);
comment on table bastion.agent_outbox is 'Durable Hub → Agent messages: one per dispatched task attempt or backup run. Payloads never hold credentials (WebDAV logins are resolved and added by the gateway when it sends). Open rows (completed_at NULL) are re-sent on every new connection of the agent until a result, a supersession or a loss completes them.';
comment on column bastion.agent_outbox.id is 'Message id (the agent''s results cache is keyed by it).';
comment on column bastion.agent_outbox.agent_id is 'The agent that must execute it.';
comment on column bastion.agent_outbox.kind is 'backup_run, snapshot_delete or incomplete_cleanup.';
comment on column bastion.agent_outbox.queue is 'For task messages: the queue (bastion_private.task_queues.name) of the task.';
comment on column bastion.agent_outbox.run_id is 'The run (backup_run) or the task (its run id) the message serves.';
comment on column bastion.agent_outbox.attempt is 'For task messages: the task''s attempt number; a result only counts while that attempt is running for this agent.';
comment on column bastion.agent_outbox.payload is 'What the agent needs, without credentials: run/job ids, target snapshot, spec (backup runs), started_at.';
comment on column bastion.agent_outbox.created_at is 'When the work was dispatched.';
comment on column bastion.agent_outbox.delivered_at is 'Last time it was sent to the agent.';
comment on column bastion.agent_outbox.delivered_session is 'Socket it was last sent on; a new socket gets every open message again.';
comment on column bastion.agent_outbox.delivery_count is 'How many times it was sent.';
comment on column bastion.agent_outbox.acked_at is 'When the agent first acknowledged it.';
comment on column bastion.agent_outbox.completed_at is 'When it stopped being open: result applied (or stale), superseded, agent lost or revoked.';
comment on column bastion.agent_outbox.result is 'The agent''s result as received, or {status: superseded | lost | revoked | failed_at_delivery, …} when the hub closed it.';

-- ---------------------------------------------------------------------------
-- Helpers

create function bastion_private.notify_agent(p_op text, p_agent uuid, p_extra jsonb default '{}') returns void
language sql
set search_path = pg_catalog, pg_temp
as $$
  select pg_notify('bastion_agents', (jsonb_build_object('op', p_op, 'agent_id', p_agent) || coalesce(p_extra, '{}'))::text)
$$;
comment on function bastion_private.notify_agent(text, uuid, jsonb) is 'NOTIFY bastion_agents {op, agent_id, …}: every gateway hears it, the one holding the agent''s socket acts (delivers, closes).';

create function bastion_private.new_secret_text(p_prefix text) returns text
language sql volatile
set search_path = pg_catalog, pg_temp
as $$
  -- 32 random bytes from two v4 UUIDs (244 random bits, PostgreSQL's strong
  -- random source), base64url without padding: prefix + 43 characters.
  select p_prefix || translate(encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64'), '+/=', '-_')
$$;
comment on function bastion_private.new_secret_text(text) is 'A new bearer secret: the prefix then 43 base64url characters (enrollment tokens bet_, agent keys bak_).';

create function bastion_private.check_agent_name(p_name text) returns text
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v text := btrim(p_name);
begin
  if v is null or v = '' or char_length(v) > 64 then
    perform bastion_private.raise_error('invalid_input', 400, 'name must be 1 to 64 characters', jsonb_build_object('field', 'name', 'reason', 'length'));
  end if;
  if v ~ '[[:cntrl:]]' then
    perform bastion_private.raise_error('invalid_input', 400, 'name must not contain control characters', jsonb_build_object('field', 'name', 'reason', 'control_characters'));
  end if;
  return v;
end
$$;
comment on function bastion_private.check_agent_name(text) is 'An agent name as stored (trimmed), or invalid_input naming the field and the reason.';

create function bastion_private.agent_is_online(p_agent uuid) returns boolean
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select exists (
    select 1 from bastion.agents a join bastion_private.gateways g on g.id = a.connected_gateway
     where a.id = p_agent and a.revoked_at is null and g.heartbeat_at > now() - interval '30 seconds')
$$;
comment on function bastion_private.agent_is_online(uuid) is 'True while the agent has a socket on a live gateway (heartbeat within 30 s) and is not revoked: work is dispatched to it.';

create function bastion.agents_online(agent bastion.agents) returns boolean
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select bastion_private.agent_is_online(agent.id)
$$;
comment on function bastion.agents_online(bastion.agents) is 'Whether the agent is connected right now (a socket on a live gateway, not revoked).';
grant execute on function bastion.agents_online(bastion.agents) to bastion_viewer;

-- ---------------------------------------------------------------------------
-- Node checks: jobs and secrets may name existing, non-revoked agents.

create or replace function bastion_private.check_node_is_usable(p_node_id text, p_field text) returns void
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_revoked timestamptz;
begin
  if p_node_id is null or not bastion_private.is_node_id(p_node_id) then
    perform bastion_private.raise_error('invalid_input', 400, 'node_id must be ''hub'' or an agent UUID', jsonb_build_object('field', p_field, 'reason', 'format'));
  end if;
  if p_node_id = 'hub' then
    return;
  end if;
  select a.revoked_at into v_revoked from bastion.agents a where a.id = p_node_id::uuid;
  if not found then
    perform bastion_private.raise_error('node_not_found', 404, format('node %s is neither ''hub'' nor an enrolled agent', p_node_id), jsonb_build_object('field', p_field, 'node_id', p_node_id));
  end if;
  if v_revoked is not null then
    perform bastion_private.raise_error('agent_revoked', 409, format('agent %s is revoked', p_node_id), jsonb_build_object('field', p_field, 'node_id', p_node_id));
  end if;
end
$$;
comment on function bastion_private.check_node_is_usable(text, text) is 'Raise unless the node is ''hub'' or an enrolled agent that is not revoked (invalid_input, node_not_found, agent_revoked).';


-- ---------------------------------------------------------------------------
-- Enrollment tokens (admin) and enrollment (gateway)

create function bastion.create_enrollment_token(ttl_seconds integer default 3600, uses integer default 1, note text default null) returns bastion.created_enrollment_token
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_token text;
  v_id uuid;
  v_expires timestamptz;
  v_note text := bastion_private.task_clean_reason(create_enrollment_token.note, 200);
begin
  if create_enrollment_token.ttl_seconds is null or create_enrollment_token.ttl_seconds not between 60 and 2592000 then
    perform bastion_private.raise_error('invalid_input', 400, 'ttl_seconds must be between 60 (one minute) and 2592000 (30 days)', jsonb_build_object('field', 'ttl_seconds', 'reason', 'out_of_range'));
  end if;
  if create_enrollment_token.uses is null or create_enrollment_token.uses not between 1 and 1000 then
    perform bastion_private.raise_error('invalid_input', 400, 'uses must be between 1 and 1000', jsonb_build_object('field', 'uses', 'reason', 'out_of_range'));
  end if;
  -- Tokens that ended (expired, used up or revoked) more than 30 days ago go.
  delete from bastion_private.enrollment_tokens t
   where greatest(least(t.expires_at, coalesce(t.revoked_at, 'infinity'), case when t.remaining_uses = 0 then coalesce(t.last_used_at, t.created_at) else 'infinity' end), t.created_at)
         < now() - interval '30 days';
  v_token := bastion_private.new_secret_text('bet_');
  v_expires := now() + make_interval(secs => create_enrollment_token.ttl_seconds);
  insert into bastion_private.enrollment_tokens (token_hash, token_hint, note, created_by, expires_at, uses_allowed, remaining_uses)
  values (sha256(convert_to(v_token, 'UTF8')), left(v_token, 8), v_note, bastion_private.current_user_id(), v_expires, create_enrollment_token.uses, create_enrollment_token.uses)
  returning id into v_id;
  return row(v_id, v_token, v_expires, create_enrollment_token.uses, v_note)::bastion.created_enrollment_token;
end
$$;
comment on function bastion.create_enrollment_token(integer, integer, text) is 'Admin: a token an agent exchanges for its identity (bastion agent --enroll-token), valid ttl_seconds (60 s – 30 days, default 1 h) for `uses` enrollments (1–1000, default 1). The token is returned this once.';
grant execute on function bastion.create_enrollment_token(integer, integer, text) to bastion_admin;

create function bastion.enrollment_tokens() returns setof bastion.enrollment_token_info
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select t.id, t.token_hint, t.note, t.created_at, t.created_by, t.expires_at, t.uses_allowed, t.remaining_uses, t.last_used_at, t.revoked_at
    from bastion_private.enrollment_tokens t
   order by t.created_at desc, t.id desc
$$;
comment on function bastion.enrollment_tokens() is 'Admin: every enrollment token, newest first (without the secret).';
grant execute on function bastion.enrollment_tokens() to bastion_admin;

create function bastion.revoke_enrollment_token(token_id uuid) returns bastion.enrollment_token_info
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.enrollment_token_info;
begin
  update bastion_private.enrollment_tokens t
     set revoked_at = coalesce(t.revoked_at, now()), revoked_by = coalesce(t.revoked_by, bastion_private.current_user_id())
   where t.id = revoke_enrollment_token.token_id;
  if not found then
    perform bastion_private.raise_error('enrollment_token_not_found', 404, 'enrollment token not found', jsonb_build_object('token_id', revoke_enrollment_token.token_id));
  end if;
  select t.id, t.token_hint, t.note, t.created_at, t.created_by, t.expires_at, t.uses_allowed, t.remaining_uses, t.last_used_at, t.revoked_at
    into v from bastion_private.enrollment_tokens t where t.id = revoke_enrollment_token.token_id;
  return v;
end
$$;
comment on function bastion.revoke_enrollment_token(uuid) is 'Admin: revoke an enrollment token; later enrollments with it get enrollment_token_revoked. Agents already enrolled with it are not affected. Revoking twice is a no-op.';
grant execute on function bastion.revoke_enrollment_token(uuid) to bastion_admin;

create function bastion_private.enroll_agent(p_token_hash bytea, p_name text, p_throttle_key text default null)
returns table (agent_id uuid, agent_key text, name text)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  t bastion_private.enrollment_tokens;
  v_name text := bastion_private.check_agent_name(p_name);
  v_key text;
  v_id uuid;
begin
  -- The token row is locked: concurrent enrollments with a token of N uses
  -- enroll at most N agents.
  select * into t from bastion_private.enrollment_tokens et where et.token_hash = p_token_hash for update;
  if not found then
    perform bastion_private.raise_error('enrollment_token_invalid', 401, 'unknown enrollment token', jsonb_build_object('reason', 'not_found'));
  end if;
  if t.revoked_at is not null then
    perform bastion_private.raise_error('enrollment_token_revoked', 401, 'the enrollment token was revoked', jsonb_build_object('reason', 'revoked', 'token_id', t.id));
  end if;
  if t.expires_at <= now() then
    perform bastion_private.raise_error('enrollment_token_expired', 401, 'the enrollment token expired', jsonb_build_object('reason', 'expired', 'token_id', t.id, 'expired_at', t.expires_at));
  end if;
  if t.remaining_uses < 1 then
    perform bastion_private.raise_error('enrollment_token_exhausted', 401, format('the enrollment token was already used %s time(s), all it allows', t.uses_allowed),
      jsonb_build_object('reason', 'exhausted', 'token_id', t.id, 'uses_allowed', t.uses_allowed));
  end if;
  if exists (select 1 from bastion.agents a where lower(a.name) = lower(v_name) and a.revoked_at is null) then
    perform bastion_private.raise_error('agent_name_taken', 409, 'an agent that is not revoked already has this name', jsonb_build_object('field', 'name'));
  end if;
  begin
    insert into bastion.agents (name, enrolled_by, enrollment_token_id) values (v_name, t.created_by, t.id) returning id into v_id;
  exception when unique_violation then
    perform bastion_private.raise_error('agent_name_taken', 409, 'an agent that is not revoked already has this name', jsonb_build_object('field', 'name'));
  end;
  v_key := bastion_private.new_secret_text('bak_');
  insert into bastion_private.agent_keys (agent_id, key_hash, key_hint) values (v_id, sha256(convert_to(v_key, 'UTF8')), left(v_key, 8));
  update bastion_private.enrollment_tokens et set remaining_uses = et.remaining_uses - 1, last_used_at = now() where et.id = t.id;
  if p_throttle_key is not null then
    -- A success clears the caller's failed attempts, as a login does.
    delete from bastion_private.login_throttle lt where lt.client_address = p_throttle_key;
  end if;
  return query select v_id, v_key, v_name;
end
$$;
comment on function bastion_private.enroll_agent(bytea, text, text) is 'Gateway (POST /agent/enroll): exchange an enrollment token (by its SHA-256) for a new agent and its key (returned once), in one transaction. Errors: enrollment_token_invalid, _revoked, _expired, _exhausted (401), agent_name_taken (409), invalid_input. p_throttle_key: the login_throttle row to clear on success.';

create function bastion_private.authenticate_agent(p_key_hash bytea) returns table (agent_id uuid, name text, revoked boolean)
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  select a.id, a.name, a.revoked_at is not null
    from bastion_private.agent_keys k join bastion.agents a on a.id = k.agent_id
   where k.key_hash = p_key_hash
$$;
comment on function bastion_private.authenticate_agent(bytea) is 'The agent a key (by its SHA-256) belongs to, and whether it is revoked; no row for an unknown key.';

-- ---------------------------------------------------------------------------
-- Admin actions on agents

create function bastion.rename_agent(agent_id uuid, name text) returns bastion.agents
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.agents;
  v_name text := bastion_private.check_agent_name(rename_agent.name);
begin
  select * into v from bastion.agents a where a.id = rename_agent.agent_id for update;
  if not found then
    perform bastion_private.raise_error('agent_not_found', 404, 'agent not found', jsonb_build_object('agent_id', rename_agent.agent_id));
  end if;
  if v.revoked_at is not null then
    perform bastion_private.raise_error('agent_revoked', 409, 'the agent is revoked', jsonb_build_object('agent_id', rename_agent.agent_id));
  end if;
  begin
    update bastion.agents a set name = v_name, updated_at = now() where a.id = rename_agent.agent_id returning * into v;
  exception when unique_violation then
    perform bastion_private.raise_error('agent_name_taken', 409, 'an agent that is not revoked already has this name', jsonb_build_object('field', 'name'));
  end;
  return v;
end
$$;
comment on function bastion.rename_agent(uuid, text) is 'Admin: rename an agent (1–64 characters, unique among agents that are not revoked). Errors: agent_not_found, agent_revoked, agent_name_taken, invalid_input.';
grant execute on function bastion.rename_agent(uuid, text) to bastion_admin;

create function bastion.rotate_agent_key(agent_id uuid) returns bastion.agent_key
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.agents;
  v_key text;
begin
  select * into v from bastion.agents a where a.id = rotate_agent_key.agent_id for update;
  if not found then
    perform bastion_private.raise_error('agent_not_found', 404, 'agent not found', jsonb_build_object('agent_id', rotate_agent_key.agent_id));
  end if;
  if v.revoked_at is not null then
    perform bastion_private.raise_error('agent_revoked', 409, 'the agent is revoked', jsonb_build_object('agent_id', rotate_agent_key.agent_id));
  end if;
  v_key := bastion_private.new_secret_text('bak_');
  update bastion_private.agent_keys k set key_hash = sha256(convert_to(v_key, 'UTF8')), key_hint = left(v_key, 8), created_at = now() where k.agent_id = v.id;
  update bastion.agents a set key_rotated_at = now(), updated_at = now() where a.id = v.id;
  -- The live socket authenticated with the old key: close it.
  perform bastion_private.notify_agent('key_rotated', v.id);
  return row(v.id, v_key)::bastion.agent_key;
end
$$;
comment on function bastion.rotate_agent_key(uuid) is 'Admin: replace an agent''s key; the new key is returned this once and the live socket (old key) is closed. Give the key to the agent with: bastion agent --data-dir … --replace-key (key on stdin). Errors: agent_not_found, agent_revoked.';
grant execute on function bastion.rotate_agent_key(uuid) to bastion_admin;

-- ---------------------------------------------------------------------------
-- Gateways and connections (gateway, owner connection)

create function bastion_private.gateway_register(p_id uuid, p_host text, p_pid integer, p_version text) returns void
language sql
set search_path = pg_catalog, pg_temp
as $$
  insert into bastion_private.gateways (id, host, pid, version) values (p_id, left(p_host, 255), p_pid, left(p_version, 64))
  on conflict (id) do update set heartbeat_at = now()
$$;
comment on function bastion_private.gateway_register(uuid, text, integer, text) is 'A gateway process starts (or re-registers after its row was swept).';

create function bastion_private.gateway_stopped(p_id uuid) returns integer
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v integer;
begin
  update bastion.agents a set connected_gateway = null, connected_session = null, disconnected_at = now()
   where a.connected_gateway = p_id;
  get diagnostics v = row_count;
  delete from bastion_private.gateways g where g.id = p_id;
  return v;
end
$$;
comment on function bastion_private.gateway_stopped(uuid) is 'A gateway stops cleanly: its agents are disconnected and its row removed. Returns how many agents it held.';

create function bastion_private.agent_connected(p_agent uuid, p_gateway uuid, p_session uuid) returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  -- An idle gateway does not heartbeat (nothing depends on it); its row may
  -- have been swept, so it is (re)written with the first socket.
  insert into bastion_private.gateways as g (id) values (p_gateway) on conflict (id) do update set heartbeat_at = now();
  update bastion.agents a
     set connected_gateway = p_gateway, connected_session = p_session, connected_at = now(), disconnected_at = null, last_seen_at = now()
   where a.id = p_agent and a.revoked_at is null;
  if not found then
    return false;
  end if;
  -- One live socket per agent: whichever gateway holds an older one closes it.
  perform bastion_private.notify_agent('connected', p_agent, jsonb_build_object('session', p_session));
  return true;
end
$$;
comment on function bastion_private.agent_connected(uuid, uuid, uuid) is 'A socket of the agent opened on gateway p_gateway: it becomes the live one (older sockets are closed by their gateways on the NOTIFY). False when the agent is revoked.';

create function bastion_private.agent_disconnected(p_agent uuid, p_session uuid) returns boolean
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  update bastion.agents a set connected_gateway = null, connected_session = null, disconnected_at = now()
   where a.id = p_agent and a.connected_session = p_session;
  return found;
end
$$;
comment on function bastion_private.agent_disconnected(uuid, uuid) is 'A socket closed: the agent is disconnected if that socket was the live one (a replaced socket changes nothing). True when it was.';

create function bastion_private.agent_reschedule(p_agent uuid) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues;
  v_ids uuid[];
  v_tasks integer := 0;
  v_runs integer := 0;
  r record;
begin
  -- Tasks waiting for this agent (retrying: offline since their last attempt,
  -- or failed for a reason the agent's return may have fixed) are due now.
  -- Blocked tasks (auth, config) stay blocked: they need an operator.
  for q in select * from bastion_private.task_queues order by name loop
    execute format($f$
      with l as (
        select t.run_id from %1$s t
         where t.executor_node_id = $1 and t.status = 'retrying' and t.next_attempt_at > now()
         order by t.run_id
         for update
      ),
      u as (
        update %1$s t set next_attempt_at = now(), updated_at = now(), event_seq = t.event_seq + 1
          from l where t.run_id = l.run_id
        returning t.run_id, t.event_seq
      ),
      ev as (
        insert into %2$s (run_id, seq, level, kind, message, fields)
        select u.run_id, u.event_seq, 'info', 'rescheduled', 'the agent connected; next attempt now', jsonb_build_object('agent_id', $1)
          from u
      )
      select coalesce(array_agg(run_id order by run_id), '{}') from u$f$, q.task_table, q.event_table)
    into v_ids
    using p_agent::text;
    perform bastion_private.task_changed(q.name, v_ids);
    v_tasks := v_tasks + cardinality(v_ids);
  end loop;
  -- Manual runs waiting for the agent are attempted now (their job is
  -- replaced by one due at once).
  for r in select x.id, x.job_id from bastion.runs x where x.node_id = p_agent::text and x.status = 'queued' order by x.created_at loop
    perform bastion_private.enqueue_run_attempt(r.id, r.job_id);
    v_runs := v_runs + 1;
  end loop;
  return jsonb_build_object('tasks', v_tasks, 'runs', v_runs);
end
$$;
comment on function bastion_private.agent_reschedule(uuid) is 'The agent is back (hello): its retrying tasks become due now (graphile jobs replaced, a rescheduled event each) and its queued runs are attempted now. Returns {tasks, runs}.';

create function bastion_private.agent_hello(p_agent uuid, p_session uuid, p_version text, p_capabilities jsonb) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  update bastion.agents a
     set version = left(p_version, 64),
         capabilities = case when jsonb_typeof(p_capabilities) = 'object' and octet_length(p_capabilities::text) <= 16384 then p_capabilities else '{}' end,
         last_seen_at = now(), updated_at = now()
   where a.id = p_agent and a.connected_session = p_session and a.revoked_at is null;
  if not found then
    return null;
  end if;
  return bastion_private.agent_reschedule(p_agent);
end
$$;
comment on function bastion_private.agent_hello(uuid, uuid, text, jsonb) is 'The agent said hello on its live socket: record its version and capabilities, then agent_reschedule. NULL when the socket is not the live one any more.';

-- ---------------------------------------------------------------------------
-- Dispatch (workers)

create function bastion_private.agent_dispatch_tasks(p_queue text, p_worker text, p_run_ids uuid[])
returns table (run_id uuid, disposition text)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v_kind bastion.agent_message_kind;
  v_tasks jsonb;
  v_sent uuid[];
  v_agents uuid[];
  v_refused jsonb;
begin
  v_kind := case p_queue when 'artifact_delete' then 'snapshot_delete' when 'incomplete_cleanup' then 'incomplete_cleanup' end;
  if v_kind is null then
    perform bastion_private.raise_error('invalid_input', 400, 'this queue cannot be executed by agents', jsonb_build_object('field', 'queue', 'reason', 'not_agent_queue'));
  end if;
  -- Open messages of older attempts of these tasks are locked first (lock
  -- order: outbox, then tasks) and superseded below.
  perform 1 from bastion.agent_outbox m where m.queue = p_queue and m.run_id = any(p_run_ids) and m.completed_at is null order by m.id for update;
  -- This worker's running attempts of tasks held by agents, locked in run id
  -- order, with the state of their agent.
  execute format($f$
    select coalesce(jsonb_agg(jsonb_build_object(
             'run_id', t.run_id, 'job_id', t.job_id, 'agent_id', t.executor_node_id, 'attempt', t.attempts, 'target_snapshot', t.target_snapshot,
             'name', a.name,
             'state', case when a.id is null then 'unknown' when a.revoked_at is not null then 'revoked'
                           when bastion_private.agent_is_online(a.id) then 'online' else 'offline' end) order by t.run_id), '[]')
      from (select * from %s x
             where x.run_id = any($1) and x.status = 'running' and x.claimed_by = $2 and x.executor_node_id <> 'hub'
             order by x.run_id
             for update) t
      left join bastion.agents a on a.id::text = t.executor_node_id$f$, q.task_table)
  into v_tasks
  using p_run_ids, p_worker;

  update bastion.agent_outbox m set completed_at = now(), result = jsonb_build_object('status', 'superseded', 'reason', 'a newer attempt was dispatched')
   where m.queue = p_queue and m.completed_at is null
     and m.run_id in (select (x ->> 'run_id')::uuid from jsonb_array_elements(v_tasks) x where x ->> 'state' = 'online');

  with d as (
    select * from jsonb_to_recordset(v_tasks) as x(run_id uuid, job_id uuid, agent_id text, attempt integer, target_snapshot jsonb, state text)
     where x.state = 'online'
  ),
  ins as (
    insert into bastion.agent_outbox (agent_id, kind, queue, run_id, attempt, payload)
    select d.agent_id::uuid, v_kind, p_queue, d.run_id, d.attempt,
           jsonb_build_object('queue', p_queue, 'run_id', d.run_id, 'job_id', d.job_id, 'attempt', d.attempt, 'target_snapshot', d.target_snapshot)
      from d
    returning agent_outbox.run_id, agent_outbox.agent_id
  )
  select coalesce(array_agg(ins.run_id order by ins.run_id), '{}'), coalesce(array_agg(distinct ins.agent_id), '{}') into v_sent, v_agents from ins;

  -- The attempt now belongs to the agent: the worker's heartbeats and outcomes
  -- no longer match it; the gateway heartbeats it and applies the agent's result.
  execute format($f$
    with u as (
      update %1$s t set claimed_by = 'agent:' || t.executor_node_id, heartbeat_at = now(), updated_at = now(), event_seq = t.event_seq + 1
       where t.run_id = any($1)
      returning t.run_id, t.event_seq, t.executor_node_id, t.attempts
    )
    insert into %2$s (run_id, seq, level, kind, message, fields)
    select u.run_id, u.event_seq, 'info', 'dispatched', 'sent to agent ' || coalesce(a.name, u.executor_node_id),
           jsonb_build_object('agent_id', u.executor_node_id, 'attempt', u.attempts, 'message_id', m.id)
      from u
      left join bastion.agents a on a.id::text = u.executor_node_id
      left join bastion.agent_outbox m on m.queue = $2 and m.run_id = u.run_id and m.completed_at is null$f$, q.task_table, q.event_table)
  using v_sent, p_queue;

  perform bastion_private.notify_agent('outbox', x) from unnest(v_agents) x;

  -- Agents that are revoked or unknown can never execute: the attempt fails
  -- with kind config (the task is blocked; an operator ignores it or the
  -- data is handled by hand).
  select coalesce(jsonb_agg(jsonb_build_object(
           'run_id', x ->> 'run_id', 'attempt', (x ->> 'attempt')::integer, 'kind', 'config',
           'error', case x ->> 'state' when 'revoked' then format('agent %s (%s) is revoked; its data cannot be reached through Bastion', x ->> 'name', x ->> 'agent_id')
                                      else format('node %s is not an enrolled agent', x ->> 'agent_id') end,
           'fields', jsonb_build_object('reason', case x ->> 'state' when 'revoked' then 'agent_revoked' else 'node_not_found' end, 'agent_id', x ->> 'agent_id'))), '[]')
    into v_refused
    from jsonb_array_elements(v_tasks) x where x ->> 'state' in ('revoked', 'unknown');
  if jsonb_array_length(v_refused) > 0 then
    perform bastion_private.task_finish(p_queue, p_worker, v_refused);
  end if;

  return query
    select (x ->> 'run_id')::uuid,
           case x ->> 'state' when 'online' then 'dispatched' when 'offline' then 'offline' else 'refused' end
      from jsonb_array_elements(v_tasks) x;
end
$$;
comment on function bastion_private.agent_dispatch_tasks(text, text, uuid[]) is 'Worker, right after a claim: hand this worker''s running attempts of agent-held tasks to their agents. Online agent → outbox message (no credentials), claimed_by ''agent:<id>'', dispatched event, NOTIFY (dispatched). Offline → left to the worker, which records kind offline (offline). Revoked or unknown agent → the attempt fails with kind config (refused). Hub tasks are not returned.';

create function bastion_private.agent_dispatch_due(p_queue text, p_worker text, p_max_nodes integer default 200) returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v_node text;
  v_run uuid;
  v_claimed jsonb;
  v_tasks jsonb := '[]';
  v_offline jsonb;
  v_sent integer;
begin
  if p_max_nodes is null or p_max_nodes < 1 or p_max_nodes > 10000 then
    perform bastion_private.raise_error('invalid_input', 400, 'max_nodes must be between 1 and 10000', jsonb_build_object('field', 'max_nodes'));
  end if;
  -- Each agent task has its own graphile job in its node's lanes, so a burst
  -- of work for many agents would otherwise be claimed one job at a time
  -- (bench/agents.ts: 100 agents at once, p99 ≈ 0.9 s before this sweep).
  -- A worker that just dispatched agent work also claims, node by node with
  -- the queue's own task_claim (its batching, locks and events), the due
  -- tasks of the other online agents, and hands them over at once; their
  -- graphile jobs are dropped by the claims, in this transaction.
  for v_node in execute format($f$
      select n.node from (
        select distinct t.executor_node_id as node from %s t
         where t.status in ('queued', 'retrying', 'blocked') and t.next_attempt_at <= now() and t.executor_node_id <> 'hub'
         limit 10000) n
       where bastion_private.agent_is_online(n.node::uuid)
       order by n.node
       limit $1$f$, q.task_table)
    using p_max_nodes
  loop
    execute format($f$
      select t.run_id from %s t
       where t.executor_node_id = $1 and t.status in ('queued', 'retrying', 'blocked') and t.next_attempt_at <= now()
       order by t.next_attempt_at, t.run_id limit 1$f$, q.task_table)
    into v_run using v_node;
    continue when v_run is null;
    select coalesce(jsonb_agg(c), '[]') into v_claimed from bastion_private.task_claim(p_queue, v_run, p_worker, 256) c;
    v_tasks := v_tasks || v_claimed;
  end loop;
  if jsonb_array_length(v_tasks) = 0 then
    return 0;
  end if;
  select count(*) filter (where d.disposition = 'dispatched'),
         coalesce(jsonb_agg(jsonb_build_object('run_id', d.run_id, 'attempt', (select (x ->> 'attempts')::integer from jsonb_array_elements(v_tasks) x where (x ->> 'run_id')::uuid = d.run_id),
                                               'kind', 'offline', 'error', 'the agent disconnected just before its work was handed over',
                                               'fields', jsonb_build_object('reason', 'agent_offline'))) filter (where d.disposition = 'offline'), '[]')
    into v_sent, v_offline
    from bastion_private.agent_dispatch_tasks(p_queue, p_worker, array(select (x ->> 'run_id')::uuid from jsonb_array_elements(v_tasks) x)) d;
  -- Claimed here, so nobody else would record them: an agent that went away
  -- in between gets the usual offline failure.
  if jsonb_array_length(v_offline) > 0 then
    perform bastion_private.task_finish(p_queue, p_worker, v_offline);
  end if;
  return v_sent;
end
$$;
comment on function bastion_private.agent_dispatch_due(text, text, integer) is 'Worker, after dispatching agent work: claim (task_claim, node by node, at most p_max_nodes nodes) the due tasks of every online agent in the queue and dispatch them at once (agent_dispatch_tasks); those whose agent went offline in between fail with kind offline. Returns how many were dispatched.';

create function bastion_private.agent_dispatch_run(p_run_id uuid, p_target_snapshot jsonb, p_payload jsonb)
returns table (disposition text, message_id uuid)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_run bastion.runs;
  v_agent bastion.agents;
  v_started bastion.runs;
  v_id uuid;
  v_last text;
begin
  if p_payload is null or jsonb_typeof(p_payload) <> 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'payload must be a JSON object', jsonb_build_object('field', 'payload'));
  end if;
  select * into v_run from bastion.runs r where r.id = p_run_id for update;
  if not found then
    perform bastion_private.raise_error('run_not_found', 404, 'run not found', jsonb_build_object('run_id', p_run_id));
  end if;
  if v_run.status <> 'queued' then
    return query select 'skipped'::text, null::uuid;
    return;
  end if;
  if v_run.node_id = 'hub' then
    perform bastion_private.raise_error('invalid_input', 400, 'the run executes on the hub, not on an agent', jsonb_build_object('field', 'node_id'));
  end if;
  select * into v_agent from bastion.agents a where a.id = v_run.node_id::uuid;
  if not found then
    perform bastion.fail_run(v_run.id, 'node_not_found', format('node %s is not an enrolled agent', v_run.node_id), jsonb_build_object('node_id', v_run.node_id));
    return query select 'failed'::text, null::uuid;
    return;
  end if;
  if v_agent.revoked_at is not null then
    perform bastion.fail_run(v_run.id, 'agent_revoked', format('agent %s (%s) is revoked', v_agent.name, v_agent.id), jsonb_build_object('agent_id', v_agent.id));
    return query select 'failed'::text, null::uuid;
    return;
  end if;

  if bastion_private.agent_is_online(v_agent.id) then
    v_started := bastion.start_run(v_run.id, p_target_snapshot);
    if v_started.id is null then
      return query select 'skipped'::text, null::uuid; -- the job was archived: start_run canceled the run
      return;
    end if;
    insert into bastion.agent_outbox (agent_id, kind, run_id, payload)
    values (v_agent.id, 'backup_run', v_run.id,
            p_payload || jsonb_build_object('run_id', v_run.id, 'job_id', v_run.job_id, 'started_at', v_started.started_at, 'target_snapshot', p_target_snapshot))
    returning id into v_id;
    perform bastion_private.append_run_event(v_run.id, 'info', 'dispatched', format('sent to agent %s', v_agent.name),
      jsonb_build_object('agent_id', v_agent.id, 'message_id', v_id));
    perform bastion_private.notify_agent('outbox', v_agent.id);
    return query select 'dispatched'::text, v_id;
    return;
  end if;

  -- Offline. A scheduled run is recorded as missed at its slot (history shows
  -- it; the next slot tries again). A manual run waits for the agent: its job
  -- is re-added 10 minutes out, and agent_hello makes it due at once; after
  -- 24 hours of waiting it fails.
  if v_run.trigger = 'schedule' then
    perform bastion.fail_run(v_run.id, 'agent_offline',
      format('agent %s (%s) was not connected at the schedule slot; the next slot runs when it is', v_agent.name, v_agent.id),
      jsonb_build_object('agent_id', v_agent.id, 'last_seen_at', v_agent.last_seen_at));
    return query select 'failed'::text, null::uuid;
    return;
  end if;
  if v_run.created_at < now() - interval '24 hours' then
    perform bastion.fail_run(v_run.id, 'agent_offline',
      format('agent %s (%s) did not connect within 24 hours of the request', v_agent.name, v_agent.id),
      jsonb_build_object('agent_id', v_agent.id, 'last_seen_at', v_agent.last_seen_at));
    return query select 'failed'::text, null::uuid;
    return;
  end if;
  -- Same identifier, queue and key as bastion_private.enqueue_run_attempt (0003);
  -- change both together.
  perform graphile_worker.add_job(
    identifier => 'run-backup',
    payload => json_build_object('run_id', v_run.id),
    queue_name => 'run-backup:' || v_run.job_id::text,
    run_at => now() + interval '10 minutes',
    max_attempts => 5,
    job_key => 'run-backup:' || v_run.id::text,
    job_key_mode => 'replace');
  select e.kind into v_last from bastion.run_events e where e.run_id = v_run.id order by e.seq desc limit 1;
  if v_last is distinct from 'waiting_for_agent' then
    perform bastion_private.append_run_event(v_run.id, 'warn', 'waiting_for_agent',
      format('agent %s is not connected; the run starts when it connects (checked again every 10 minutes, for up to 24 hours)', v_agent.name),
      jsonb_build_object('agent_id', v_agent.id, 'last_seen_at', v_agent.last_seen_at));
  end if;
  return query select 'waiting'::text, null::uuid;
end
$$;
comment on function bastion_private.agent_dispatch_run(uuid, jsonb, jsonb) is 'Worker (run-backup of an agent job): online agent → start_run and an outbox message with the spec (no credentials) in one transaction (dispatched); offline → a scheduled run fails with agent_offline, a manual run waits (waiting; failed after 24 h); revoked or unknown agent → failed; not queued → skipped.';

-- ---------------------------------------------------------------------------
-- Delivery, heartbeats and results (gateway)

create function bastion_private.agent_outbox_take_many(p_items jsonb, p_limit integer default 100) returns setof bastion.agent_outbox
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues;
  v_agents uuid[];
begin
  -- Only sockets that are their agent's live one (and the agent not revoked).
  select coalesce(array_agg(distinct a.id), '{}') into v_agents
    from jsonb_to_recordset(p_items) as x(agent_id uuid, session uuid)
    join bastion.agents a on a.id = x.agent_id and a.connected_session = x.session and a.revoked_at is null;
  if cardinality(v_agents) = 0 then
    return;
  end if;
  -- Messages whose work moved on (the attempt ended, was recovered, or the
  -- run is over) are completed as superseded, not sent again.
  for q in select * from bastion_private.task_queues order by name loop
    execute format($f$
      update bastion.agent_outbox m set completed_at = now(), result = jsonb_build_object('status', 'superseded', 'reason', 'the attempt is no longer running for this agent')
       where m.agent_id = any($1) and m.completed_at is null and m.queue = $2
         and not exists (select 1 from %s t where t.run_id = m.run_id and t.status = 'running' and t.claimed_by = 'agent:' || m.agent_id::text and t.attempts = m.attempt)$f$, q.task_table)
    using v_agents, q.name;
  end loop;
  update bastion.agent_outbox m set completed_at = now(), result = jsonb_build_object('status', 'superseded', 'reason', 'the run is no longer running on this agent')
   where m.agent_id = any(v_agents) and m.completed_at is null and m.kind = 'backup_run'
     and not exists (select 1 from bastion.runs r where r.id = m.run_id and r.status = 'running' and r.node_id = m.agent_id::text);
  -- Open messages not yet sent on the live socket, at most p_limit per agent.
  return query
    with open_msgs as (
      select m.id, m.agent_id, m.created_at from bastion.agent_outbox m join bastion.agents a on a.id = m.agent_id
       where m.agent_id = any(v_agents) and m.completed_at is null and m.delivered_session is distinct from a.connected_session
       for update of m skip locked
    ),
    picked as (
      select o.id from (select o.*, row_number() over (partition by o.agent_id order by o.created_at, o.id) as k from open_msgs o) o
       where o.k <= greatest(coalesce(p_limit, 100), 1)
    )
    update bastion.agent_outbox m
       set delivered_at = now(), delivered_session = a.connected_session, delivery_count = m.delivery_count + 1
      from picked, bastion.agents a
     where m.id = picked.id and a.id = m.agent_id
    returning m.*;
end
$$;
comment on function bastion_private.agent_outbox_take_many(jsonb, integer) is 'Gateway: for many sockets at once (p_items: [{agent_id, session}], only live sockets count), the open messages not yet sent on them (at most p_limit per agent), marked delivered; messages whose attempt or run moved on are completed as superseded instead. Set-based: one statement per queue, whatever the number of agents.';

create function bastion_private.agent_outbox_take(p_agent uuid, p_session uuid, p_limit integer default 100) returns setof bastion.agent_outbox
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  select * from bastion_private.agent_outbox_take_many(jsonb_build_array(jsonb_build_object('agent_id', p_agent, 'session', p_session)), p_limit)
$$;
comment on function bastion_private.agent_outbox_take(uuid, uuid, integer) is 'Gateway: the open messages of the agent not yet sent on socket p_session (at most p_limit), marked delivered on it; messages whose attempt or run moved on are completed as superseded instead. Nothing when p_session is not the agent''s live socket.';

create function bastion_private.agent_outbox_ack(p_agent uuid, p_message uuid) returns boolean
language sql
set search_path = pg_catalog, pg_temp
as $$
  with u as (
    update bastion.agent_outbox m set acked_at = now()
     where m.id = p_message and m.agent_id = p_agent and m.acked_at is null and m.delivered_at is not null
    returning 1
  )
  select exists (select 1 from u) or exists (select 1 from bastion.agent_outbox m where m.id = p_message and m.agent_id = p_agent)
$$;
comment on function bastion_private.agent_outbox_ack(uuid, uuid) is 'Gateway: the agent acknowledged a message (first ack time kept). False when the message is not this agent''s.';

create function bastion_private.gateway_beat(p_gateway uuid, p_agents uuid[]) returns table (agent_id uuid, action text)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues;
  v_claimed text[] := array(select 'agent:' || x::text from unnest(coalesce(p_agents, '{}'::uuid[])) x);
begin
  insert into bastion_private.gateways as g (id) values (p_gateway)
  on conflict (id) do update set heartbeat_at = now();
  update bastion.agents a set last_seen_at = now()
   where a.id = any(p_agents) and a.connected_gateway = p_gateway and (a.last_seen_at is null or a.last_seen_at < now() - interval '10 seconds');
  -- Attempts in flight on agents that are reporting stay alive (run id order, as every queue transition locks).
  if cardinality(v_claimed) > 0 then
    for q in select * from bastion_private.task_queues order by name loop
      execute format($f$
        with l as (select t.run_id from %1$s t where t.status = 'running' and t.claimed_by = any($1) order by t.run_id for update)
        update %1$s t set heartbeat_at = now() from l where t.run_id = l.run_id$f$, q.task_table)
      using v_claimed;
    end loop;
  end if;
  -- What the gateway should do: close sockets the database no longer gives
  -- it (replaced elsewhere, revoked — a missed NOTIFY), deliver messages not
  -- yet sent on the live socket (a missed NOTIFY, a lost LISTEN connection).
  return query
    select a.id,
           case when a.connected_gateway is distinct from p_gateway or a.revoked_at is not null then 'close' else 'deliver' end
      from bastion.agents a
     where a.id = any(p_agents)
       and (a.connected_gateway is distinct from p_gateway or a.revoked_at is not null
            or exists (select 1 from bastion.agent_outbox m
                        where m.agent_id = a.id and m.completed_at is null and m.delivered_session is distinct from a.connected_session));
end
$$;
comment on function bastion_private.gateway_beat(uuid, uuid[]) is 'Gateway, every 10 s, with the agents whose sockets it holds and that reported recently: gateway heartbeat, last_seen_at (at most every 10 s), heartbeat of their attempts in flight; returns agents to close (no longer theirs) or to deliver to (open messages not sent on the live socket).';

create function bastion_private.agent_task_event(p_agent uuid, p_message uuid, p_level bastion.event_level, p_kind text, p_text text, p_fields jsonb) returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  m bastion.agent_outbox;
  q bastion_private.task_queues;
  v_running boolean;
begin
  select * into m from bastion.agent_outbox x where x.id = p_message;
  if not found or m.agent_id <> p_agent or m.queue is null or m.completed_at is not null then
    return false;
  end if;
  q := bastion_private.task_queue(m.queue);
  execute format('select exists (select 1 from %s t where t.run_id = $1 and t.status = ''running'' and t.claimed_by = $2 and t.attempts = $3)', q.task_table)
    into v_running using m.run_id, 'agent:' || p_agent::text, m.attempt;
  if not v_running then
    return false;
  end if;
  perform bastion_private.task_append_event(m.queue, m.run_id, coalesce(p_level, 'info'), p_kind, bastion_private.task_clean_error(p_text, 1000),
    (case when jsonb_typeof(p_fields) = 'object' then p_fields else '{}'::jsonb end) || jsonb_build_object('agent_id', p_agent, 'attempt', m.attempt));
  return true;
end
$$;
comment on function bastion_private.agent_task_event(uuid, uuid, bastion.event_level, text, text, jsonb) is 'Gateway: append an agent''s event (start, progress) to the task of one of its messages, only while that attempt is running for that agent. False when it is not (the event is dropped).';

create function bastion_private.agent_task_result(p_agent uuid, p_message uuid, p_result jsonb) returns text
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  m bastion.agent_outbox;
  v_item jsonb;
  v_fields jsonb := case when jsonb_typeof(p_result -> 'fields') = 'object' then p_result -> 'fields' else '{}'::jsonb end
                    || jsonb_build_object('agent_id', p_agent, 'message_id', p_message);
  v_changed integer;
begin
  if p_result is null or jsonb_typeof(p_result) <> 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'result must be a JSON object', jsonb_build_object('field', 'result'));
  end if;
  select * into m from bastion.agent_outbox x where x.id = p_message for update;
  if not found or m.agent_id <> p_agent or m.queue is null then
    return 'unknown';
  end if;
  if m.completed_at is not null then
    return 'duplicate';
  end if;
  -- run_id and attempt come from the message, never from the agent: a result
  -- can only finish the attempt that was dispatched to this agent.
  if p_result ? 'outcome' then
    v_item := jsonb_build_object('run_id', m.run_id, 'attempt', m.attempt, 'outcome', p_result ->> 'outcome', 'message', left(p_result ->> 'message', 1000), 'fields', v_fields);
  else
    v_item := jsonb_build_object('run_id', m.run_id, 'attempt', m.attempt, 'kind', coalesce(p_result ->> 'kind', 'unknown'),
                                 'error', coalesce(nullif(p_result ->> 'error', ''), 'the agent reported a failure'), 'fields', v_fields)
              || case when jsonb_typeof(p_result -> 'retry_after_secs') = 'number' then jsonb_build_object('retry_after_secs', least(greatest((p_result ->> 'retry_after_secs')::numeric, 0), 86400)::integer) else '{}' end;
  end if;
  begin
    select count(*) into v_changed from bastion_private.task_finish(m.queue, 'agent:' || p_agent::text, jsonb_build_array(v_item));
  exception when check_violation or invalid_text_representation then
    -- An outcome or error kind this queue does not accept (a buggy agent):
    -- the attempt failed, and says why.
    select count(*) into v_changed from bastion_private.task_finish(m.queue, 'agent:' || p_agent::text, jsonb_build_array(jsonb_build_object(
      'run_id', m.run_id, 'attempt', m.attempt, 'kind', 'unknown',
      'error', format('the agent reported a result this queue does not accept (outcome %s, kind %s)', left(coalesce(p_result ->> 'outcome', '-'), 32), left(coalesce(p_result ->> 'kind', '-'), 32)),
      'fields', v_fields || jsonb_build_object('reason', 'invalid_agent_result'))));
  end;
  update bastion.agent_outbox x set completed_at = now(), result = p_result, acked_at = coalesce(x.acked_at, now()), delivered_at = coalesce(x.delivered_at, now()),
                                    delivery_count = greatest(x.delivery_count, 1)
   where x.id = m.id;
  return case when v_changed > 0 then 'applied' else 'stale' end;
end
$$;
comment on function bastion_private.agent_task_result(uuid, uuid, jsonb) is 'Gateway: apply an agent''s task result ({outcome, message, fields} or {kind, error, fields, retry_after_secs}) through task_finish as worker ''agent:<id>'' for the message''s run and attempt, and complete the message. Returns applied, stale (the attempt was no longer running for this agent: nothing changed), duplicate (already completed) or unknown (not this agent''s task message).';

create function bastion_private.agent_run_progress(p_agent uuid, p_message uuid, p_progress jsonb, p_text text) returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  m bastion.agent_outbox;
begin
  select * into m from bastion.agent_outbox x where x.id = p_message;
  if not found or m.agent_id <> p_agent or m.kind <> 'backup_run' or m.completed_at is not null then
    return false;
  end if;
  if not exists (select 1 from bastion.runs r where r.id = m.run_id and r.node_id = p_agent::text and r.status = 'running') then
    return false;
  end if;
  return bastion.heartbeat_run(m.run_id, case when jsonb_typeof(p_progress) = 'object' then p_progress end, left(p_text, 4096));
end
$$;
comment on function bastion_private.agent_run_progress(uuid, uuid, jsonb, text) is 'Gateway: an agent''s heartbeat / progress of a backup run (heartbeat_run). False when the run is not running on that agent any more: the gateway tells the agent to cancel.';

create function bastion_private.agent_run_event(p_agent uuid, p_message uuid, p_level bastion.event_level, p_kind text, p_text text, p_fields jsonb) returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  m bastion.agent_outbox;
begin
  select * into m from bastion.agent_outbox x where x.id = p_message;
  if not found or m.agent_id <> p_agent or m.kind <> 'backup_run' or m.completed_at is not null then
    return false;
  end if;
  if not exists (select 1 from bastion.runs r where r.id = m.run_id and r.node_id = p_agent::text and r.status = 'running') then
    return false;
  end if;
  perform bastion_private.append_run_event(m.run_id, coalesce(p_level, 'info'), p_kind, bastion_private.clean_error_text(p_text),
    (case when jsonb_typeof(p_fields) = 'object' then p_fields else '{}'::jsonb end) || jsonb_build_object('agent_id', p_agent));
  return true;
end
$$;
comment on function bastion_private.agent_run_event(uuid, uuid, bastion.event_level, text, text, jsonb) is 'Gateway: append an agent''s note (agent_resumed, agent_warning, …) to a backup run it is executing. False when the run is not running on that agent.';

create function bastion_private.agent_run_result(p_agent uuid, p_message uuid, p_result jsonb) returns text
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  m bastion.agent_outbox;
  v_outcome text;
begin
  if p_result is null or jsonb_typeof(p_result) <> 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'result must be a JSON object', jsonb_build_object('field', 'result'));
  end if;
  select * into m from bastion.agent_outbox x where x.id = p_message for update;
  if not found or m.agent_id <> p_agent or m.kind <> 'backup_run' then
    return 'unknown';
  end if;
  if m.completed_at is not null then
    return 'duplicate';
  end if;
  if not exists (select 1 from bastion.runs r where r.id = m.run_id and r.node_id = p_agent::text and r.status = 'running') then
    v_outcome := 'stale';
  elsif p_result ->> 'status' = 'success' then
    perform bastion.finish_run_success(m.run_id,
      (case when jsonb_typeof(p_result -> 'summary') = 'object' then p_result -> 'summary' else '{}'::jsonb end) || jsonb_build_object('executor_node_id', p_agent::text));
    v_outcome := 'applied';
  else
    perform bastion.fail_run(m.run_id,
      case when coalesce(p_result ->> 'error_code', '') ~ '^[a-z][a-z0-9_]{0,63}$' then p_result ->> 'error_code' else 'agent_failed' end,
      coalesce(nullif(p_result ->> 'error', ''), 'the agent reported a failure'),
      (case when jsonb_typeof(p_result -> 'fields') = 'object' then p_result -> 'fields' else '{}'::jsonb end) || jsonb_build_object('agent_id', p_agent));
    v_outcome := 'applied';
  end if;
  update bastion.agent_outbox x set completed_at = now(), result = p_result, acked_at = coalesce(x.acked_at, now()), delivered_at = coalesce(x.delivered_at, now()),
                                    delivery_count = greatest(x.delivery_count, 1)
   where x.id = m.id;
  return v_outcome;
end
$$;
comment on function bastion_private.agent_run_result(uuid, uuid, jsonb) is 'Gateway: apply an agent''s backup result ({status: success, summary} → finish_run_success, indexing the snapshot with the agent''s node id; {status: failed, error_code, error, fields} → fail_run) if the run is still running on that agent, and complete the message. Returns applied, stale, duplicate or unknown.';

-- Batched forms for the gateway (gateway/agents/batcher.ts): under load it
-- sends the deliveries, acks, events and results of many agents in one
-- statement each instead of one round trip per frame (bench/agents.ts: 100
-- agents receiving work at once cost ~400 statements without batching).
-- Tasks are touched in run id order, as every multi-task transition does, and
-- each item runs in its own subtransaction, so one bad item (or a deadlock
-- with a transition touching the same rows in another order) fails alone.

create function bastion_private.agent_outbox_ack_many(p_items jsonb) returns table (message_id uuid, known boolean)
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with x as (
    select * from jsonb_to_recordset(p_items) as x(agent_id uuid, message_id uuid)
  ),
  -- Acks are bookkeeping: a row another transaction holds is skipped (its
  -- result sets acked_at anyway), so an ack never waits and never deadlocks.
  l as (
    select m.id from bastion.agent_outbox m join x on x.message_id = m.id and x.agent_id = m.agent_id
     where m.acked_at is null and m.delivered_at is not null
     order by m.id
     for update of m skip locked
  ),
  u as (
    update bastion.agent_outbox m set acked_at = now() from l where m.id = l.id returning m.id
  )
  select x.message_id, exists (select 1 from bastion.agent_outbox m where m.id = x.message_id and m.agent_id = x.agent_id) from x
$$;
comment on function bastion_private.agent_outbox_ack_many(jsonb) is 'Gateway: record many acks ([{agent_id, message_id}]); known = the message is that agent''s. Rows held by another transaction are skipped (bookkeeping only).';

create function bastion_private.agent_task_events(p_items jsonb) returns table (message_id uuid, recorded boolean)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
  v boolean;
begin
  for r in
    select (e.value ->> 'agent_id')::uuid as agent_id, (e.value ->> 'message_id')::uuid as message_id, (e.value ->> 'level')::bastion.event_level as level,
           e.value ->> 'kind' as kind, e.value ->> 'message' as message, e.value -> 'fields' as fields, e.n, m.run_id
      from jsonb_array_elements(p_items) with ordinality as e(value, n)
      left join bastion.agent_outbox m on m.id = (e.value ->> 'message_id')::uuid
     order by m.run_id nulls last, e.n
  loop
    begin
      v := bastion_private.agent_task_event(r.agent_id, r.message_id, r.level, r.kind, r.message, r.fields);
    exception when deadlock_detected or check_violation then
      v := false;
    end;
    message_id := r.message_id;
    recorded := v;
    return next;
  end loop;
end
$$;
comment on function bastion_private.agent_task_events(jsonb) is 'Gateway: agent_task_event for many events ([{agent_id, message_id, level, kind, message, fields}]), in task order; an event that cannot be recorded is dropped (recorded false).';

create function bastion_private.agent_task_results(p_items jsonb) returns table (item integer, disposition text)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  r record;
  v text;
begin
  for r in
    select (e.value ->> 'agent_id')::uuid as agent_id, (e.value ->> 'message_id')::uuid as message_id, e.value -> 'result' as result, e.n, m.run_id
      from jsonb_array_elements(p_items) with ordinality as e(value, n)
      left join bastion.agent_outbox m on m.id = (e.value ->> 'message_id')::uuid
     order by m.run_id nulls last, e.n
  loop
    begin
      v := bastion_private.agent_task_result(r.agent_id, r.message_id, r.result);
    exception when deadlock_detected then
      v := 'retry';
    end;
    item := r.n;
    disposition := v;
    return next;
  end loop;
end
$$;
comment on function bastion_private.agent_task_results(jsonb) is 'Gateway: agent_task_result for many results ([{agent_id, message_id, result}]), in task order, each in its own subtransaction; returns each item''s 1-based position and disposition (retry = a deadlock with another transition: the gateway applies that one again alone).';

-- ---------------------------------------------------------------------------
-- Losing and revoking agents

create function bastion_private.agent_fail_open_work(p_agent uuid, p_status text, p_kind bastion.task_error_kind, p_run_code text, p_error text) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  m record;
  v_tasks integer := 0;
  v_runs integer := 0;
  v_n integer;
begin
  -- Lock order: the agent's open messages (by id), then each task or run.
  for m in select * from bastion.agent_outbox x where x.agent_id = p_agent and x.completed_at is null order by x.id for update loop
    if m.queue is not null then
      select count(*) into v_n from bastion_private.task_finish(m.queue, 'agent:' || p_agent::text, jsonb_build_array(jsonb_build_object(
        'run_id', m.run_id, 'attempt', m.attempt, 'kind', p_kind, 'error', p_error,
        'fields', jsonb_build_object('reason', p_status, 'agent_id', p_agent, 'message_id', m.id))));
      v_tasks := v_tasks + v_n;
    elsif exists (select 1 from bastion.runs r where r.id = m.run_id and r.status = 'running' and r.node_id = p_agent::text) then
      perform bastion.fail_run(m.run_id, p_run_code, p_error, jsonb_build_object('agent_id', p_agent, 'message_id', m.id));
      v_runs := v_runs + 1;
    end if;
    update bastion.agent_outbox x set completed_at = now(), result = jsonb_build_object('status', p_status) where x.id = m.id;
  end loop;
  return jsonb_build_object('tasks', v_tasks, 'runs', v_runs);
end
$$;
comment on function bastion_private.agent_fail_open_work(uuid, text, bastion.task_error_kind, text, text) is 'Fail everything in flight on an agent: task attempts still running for it (task_finish with p_kind), runs still running on it (fail_run with p_run_code), and complete its open messages with {status: p_status}. Returns {tasks, runs}.';

create function bastion_private.agent_lost(p_agent uuid default null, p_grace interval default '25 seconds') returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  a record;
  v jsonb;
  v_agents integer := 0;
  v_tasks integer := 0;
  v_runs integer := 0;
begin
  if p_grace is null or p_grace < interval '1 second' then
    perform bastion_private.raise_error('invalid_input', 400, 'grace must be at least one second', jsonb_build_object('field', 'grace'));
  end if;
  -- Agents held by a gateway that stopped heartbeating are disconnected
  -- (since that gateway's last heartbeat).
  update bastion.agents x set connected_gateway = null, connected_session = null, disconnected_at = g.heartbeat_at
    from bastion_private.gateways g
   where g.id = x.connected_gateway and g.heartbeat_at < now() - interval '30 seconds' and (p_agent is null or x.id = p_agent);
  delete from bastion_private.gateways g where g.heartbeat_at < now() - interval '1 hour';
  -- Agents offline for longer than the grace period lose their work in
  -- flight: attempts fail with kind offline (retried with the offline backoff,
  -- and at once when the agent says hello again), runs fail with agent_lost.
  for a in
    select x.id, x.name, x.disconnected_at from bastion.agents x
     where (p_agent is null or x.id = p_agent) and x.connected_gateway is null and x.revoked_at is null
       and coalesce(x.disconnected_at, '-infinity') < now() - p_grace
       and exists (select 1 from bastion.agent_outbox m where m.agent_id = x.id and m.completed_at is null)
     order by x.id
  loop
    v := bastion_private.agent_fail_open_work(a.id, 'lost', 'offline', 'agent_lost',
      format('agent %s disconnected during the work and did not come back within %s seconds', a.name, extract(epoch from p_grace)::integer));
    v_agents := v_agents + 1;
    v_tasks := v_tasks + (v ->> 'tasks')::integer;
    v_runs := v_runs + (v ->> 'runs')::integer;
  end loop;
  -- Housekeeping: completed messages are kept a week for diagnostics.
  delete from bastion.agent_outbox m where m.completed_at < now() - interval '7 days';
  return jsonb_build_object('agents', v_agents, 'tasks', v_tasks, 'runs', v_runs);
end
$$;
comment on function bastion_private.agent_lost(uuid, interval) is 'Gateway (p_grace after a socket closed) and watchdog (every minute, all agents): work in flight on agents disconnected for longer than p_grace fails — attempts with kind offline, runs with agent_lost — and its messages are completed as lost. Also disconnects agents of dead gateways and prunes old messages. Returns {agents, tasks, runs}.';

create function bastion.revoke_agent(agent_id uuid) returns bastion.agents
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.agents;
begin
  select * into v from bastion.agents a where a.id = revoke_agent.agent_id for update;
  if not found then
    perform bastion_private.raise_error('agent_not_found', 404, 'agent not found', jsonb_build_object('agent_id', revoke_agent.agent_id));
  end if;
  if v.revoked_at is not null then
    return v; -- already revoked: nothing changes
  end if;
  perform bastion_private.agent_fail_open_work(v.id, 'revoked', 'config', 'agent_revoked', format('agent %s was revoked while the work was in flight', v.name));
  update bastion.agents a
     set revoked_at = now(), revoked_by = bastion_private.current_user_id(), connected_gateway = null, connected_session = null,
         disconnected_at = case when a.connected_gateway is not null then now() else a.disconnected_at end, updated_at = now()
   where a.id = v.id
  returning * into v;
  -- The gateway holding its socket closes it now.
  perform bastion_private.notify_agent('revoked', v.id);
  return v;
end
$$;
comment on function bastion.revoke_agent(uuid) is 'Admin: revoke an agent — its key is refused from now on, its live socket is closed at once, attempts in flight fail (kind config: the tasks are blocked) and runs in flight fail with agent_revoked. Jobs on it can no longer run; its snapshots stay indexed. Revoking twice is a no-op. Error: agent_not_found.';
grant execute on function bastion.revoke_agent(uuid) to bastion_admin;

-- ---------------------------------------------------------------------------
-- Row-level security and grants

alter table bastion.agents enable row level security;
alter table bastion.agent_outbox enable row level security;
grant select on bastion.agents, bastion.agent_outbox to bastion_viewer;
create policy agents_select on bastion.agents for select to bastion_viewer using (true);
create policy agent_outbox_select on bastion.agent_outbox for select to bastion_viewer using (true);
