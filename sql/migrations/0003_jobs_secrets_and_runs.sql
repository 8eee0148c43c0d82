-- 0003_jobs_secrets_and_runs: creating and editing jobs, node-scoped encrypted
-- secrets, and the life of a run — requested by hand or by the scheduler,
-- started, kept alive, finished or failed by a worker, recovered by the
-- watchdog when its worker dies — plus the snapshot index upsert.
--
-- Who may call what (docs/jobs.md):
-- * admin:    create_job, update_job, put_secret, delete_secret, list_secrets.
--             A job spec decides which files of the hub are read and where
--             they are written, so defining one is configuration, like secrets.
-- * operator: request_run (operators run jobs).
-- * workers and DBAs only (not granted to any application role): schedule_run,
--   start_run, heartbeat_run, finish_run_success, fail_run, requeue_run,
--   recover_runs, upsert_run_artifact. Workers connect as the schema owner.
--
-- Run states: queued → running → success | failed; queued → rejected (overlap
-- policy reject) | canceled (job archived before it started) | failed (spec
-- invalid); running → queued again when a worker shuts down mid-run (the next
-- attempt resumes the same run directory). Each queued run has one
-- graphile-worker job `run-backup` with key `run-backup:<run_id>` in the named
-- queue `run-backup:<job_id>`, added in the same transaction as the state
-- change, so runs of one job execute one at a time, in order.

-- ---------------------------------------------------------------------------
-- Helpers

create function bastion_private.truncate_bytes(value text, max_bytes integer) returns text
language plpgsql immutable
as $$
declare
  v text := value;
begin
  if v is null or octet_length(v) <= max_bytes then
    return v;
  end if;
  -- Cut on a character boundary: drop characters until the text fits, then add the ellipsis (3 bytes).
  v := left(v, max_bytes);
  while octet_length(v) > max_bytes - 3 loop
    v := left(v, char_length(v) - greatest(1, (octet_length(v) - max_bytes + 3) / 4));
  end loop;
  return v || '…';
end
$$;
comment on function bastion_private.truncate_bytes(text, integer) is 'Cut text to at most max_bytes UTF-8 bytes on a character boundary, ending in … when cut.';
grant execute on function bastion_private.truncate_bytes(text, integer) to bastion_viewer;

create function bastion_private.clean_error_text(value text) returns text
language sql immutable
as $$
  -- Defence in depth behind core/redact.ts sanitizeErrorText: one line, no
  -- URL userinfo, at most 1000 bytes (runs.error allows 1024).
  select bastion_private.truncate_bytes(
    btrim(regexp_replace(
      regexp_replace(coalesce(value, ''), '([a-z][a-z0-9+.-]*://)[^/@[:space:]]*@', '\1', 'gi'),
      '[[:cntrl:]]+', ' ', 'g')),
    1000)
$$;
comment on function bastion_private.clean_error_text(text) is 'Error text as runs store it: control characters and line breaks turned into spaces, URL credentials removed, trimmed, at most 1000 bytes.';
grant execute on function bastion_private.clean_error_text(text) to bastion_viewer;

create function bastion_private.jsonb_count(value jsonb) returns bigint
language sql immutable
as $$
  -- A non-negative whole number from JSON, or NULL for anything else (so a
  -- malformed summary never fails the snapshot upsert).
  -- Nested CASE: only a JSON number is ever cast (AND does not fix the order).
  select case when jsonb_typeof(value) = 'number' then
    case when (value #>> '{}')::numeric >= 0
          and (value #>> '{}')::numeric = trunc((value #>> '{}')::numeric)
          and (value #>> '{}')::numeric <= 9223372036854775807
    then (value #>> '{}')::numeric::bigint end
  end
$$;
comment on function bastion_private.jsonb_count(jsonb) is 'A JSON number that is a whole number ≥ 0 as bigint, else NULL.';
grant execute on function bastion_private.jsonb_count(jsonb) to bastion_viewer;

-- ---------------------------------------------------------------------------
-- Jobs

alter table bastion.jobs add column schedule_cursor timestamptz not null default now();
comment on column bastion.jobs.schedule_cursor is 'The scheduler only creates runs for cron slots after this time: set to now when the job is created or its schedule or time zone changes, then advanced to each slot it enqueues (so after downtime only the latest missed slot runs).';
comment on column bastion.jobs.schedule is 'Cron expression (5 fields: minute hour day-of-month month day-of-week, or @daily, @hourly, …) evaluated in schedule_timezone; NULL for manual-only jobs.';

create index jobs_scheduled_idx on bastion.jobs (id) where archived_at is null and schedule is not null;

-- Which nodes jobs and secrets may name: 'hub' only here; the agents
-- migration (0007) replaces this function with one that also accepts enrolled,
-- non-revoked agents. Everything that checks a node calls this one function.
create function bastion_private.check_node_is_usable(p_node_id text, p_field text) returns void
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_node_id is null or not bastion_private.is_node_id(p_node_id) then
    perform bastion_private.raise_error('invalid_input', 400, 'node_id must be ''hub'' or an agent UUID', jsonb_build_object('field', p_field, 'reason', 'format'));
  end if;
  if p_node_id <> 'hub' then
    perform bastion_private.raise_error('node_not_found', 404, format('node %s does not exist; jobs run on ''hub'' until agents are enrolled', p_node_id), jsonb_build_object('field', p_field, 'node_id', p_node_id));
  end if;
end
$$;
comment on function bastion_private.check_node_is_usable(text, text) is 'Raise unless the node may be named by a job or a secret (invalid_input, node_not_found).';

create function bastion_private.check_job_fields(name text, node_id text, schedule text, schedule_timezone text, overlap_policy bastion.overlap_policy, spec jsonb) returns void
language plpgsql stable
as $$
#variable_conflict use_column
declare
  v_target jsonb;
  v_source jsonb;
  v_key text;
begin
  -- name (the table CHECK says the same; this names the field and the reason)
  if check_job_fields.name is null or char_length(check_job_fields.name) not between 1 and 200 then
    perform bastion_private.raise_error('invalid_input', 400, 'name must be 1 to 200 characters', jsonb_build_object('field', 'name', 'reason', 'length'));
  end if;
  if check_job_fields.name <> btrim(check_job_fields.name) then
    perform bastion_private.raise_error('invalid_input', 400, 'name must not start or end with white space', jsonb_build_object('field', 'name', 'reason', 'surrounding_space'));
  end if;
  if check_job_fields.name ~ '[[:cntrl:]]' then
    perform bastion_private.raise_error('invalid_input', 400, 'name must not contain control characters', jsonb_build_object('field', 'name', 'reason', 'control_characters'));
  end if;

  perform bastion_private.check_node_is_usable(check_job_fields.node_id, 'node_id');

  -- schedule: the shape only; croner (core/cron-schedule.ts) checks the fields.
  if check_job_fields.schedule is not null and (
       char_length(check_job_fields.schedule) not between 1 and 200
       or check_job_fields.schedule !~ '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*/,?#-]+( [0-9A-Za-z*/,?#-]+){4})$') then
    perform bastion_private.raise_error('invalid_schedule', 400, 'schedule must be 5 cron fields separated by single spaces, or @yearly, @monthly, @weekly, @daily, @hourly', jsonb_build_object('field', 'schedule', 'reason', 'shape'));
  end if;

  if check_job_fields.schedule_timezone is null or char_length(check_job_fields.schedule_timezone) not between 1 and 64
     or not exists (select 1 from pg_catalog.pg_timezone_names z where z.name = check_job_fields.schedule_timezone) then
    perform bastion_private.raise_error('invalid_timezone', 400, 'schedule_timezone is not a time zone PostgreSQL knows (IANA name such as Europe/Berlin or UTC)', jsonb_build_object('field', 'schedule_timezone', 'reason', 'unknown_time_zone'));
  end if;

  if check_job_fields.overlap_policy is null then
    perform bastion_private.raise_error('invalid_input', 400, 'overlap_policy must be queue or reject', jsonb_build_object('field', 'overlap_policy', 'reason', 'required'));
  end if;

  -- spec: the invariants SQL can check; core/job-spec.ts (zod) validates the rest
  -- before a client calls, and the worker validates again when a run starts.
  if check_job_fields.spec is null or jsonb_typeof(check_job_fields.spec) <> 'object' then
    perform bastion_private.raise_error('invalid_spec', 400, 'spec must be a JSON object', jsonb_build_object('field', 'spec', 'reason', 'not_object'));
  end if;
  if octet_length(check_job_fields.spec::text) > 262144 then
    perform bastion_private.raise_error('invalid_spec', 400, 'spec is larger than 256 KiB', jsonb_build_object('field', 'spec', 'reason', 'too_large'));
  end if;
  for v_key in select jsonb_object_keys(check_job_fields.spec) loop
    if v_key not in ('v', 'source', 'target', 'format', 'encryption', 'part_size_bytes', 'retention') then
      perform bastion_private.raise_error('invalid_spec', 400, format('spec has an unknown key %s', pg_catalog.quote_literal(left(v_key, 64))), jsonb_build_object('field', 'spec', 'reason', 'unknown_key'));
    end if;
  end loop;
  v_source := check_job_fields.spec -> 'source';
  if jsonb_typeof(v_source) is distinct from 'object' or v_source ->> 'type' is distinct from 'filesystem'
     or exists (select 1 from jsonb_object_keys(v_source) k where k not in ('type', 'paths', 'include', 'exclude', 'symlinks'))
     or jsonb_typeof(v_source -> 'paths') is distinct from 'array' or jsonb_array_length(v_source -> 'paths') not between 1 and 1000
     or exists (select 1 from jsonb_array_elements(v_source -> 'paths') p where jsonb_typeof(p) <> 'string' or left(p #>> '{}', 1) <> '/')
     or coalesce(v_source ->> 'symlinks', 'keep') not in ('keep', 'follow', 'skip') then
    perform bastion_private.raise_error('invalid_spec', 400, 'spec.source must be {type: filesystem, paths: [1 to 1000 absolute paths], include?, exclude?, symlinks?: keep|follow|skip}', jsonb_build_object('field', 'spec.source', 'reason', 'shape'));
  end if;
  for v_key in select k from unnest(array['include', 'exclude']) k loop
    if v_source ? v_key and (jsonb_typeof(v_source -> v_key) <> 'array' or jsonb_array_length(v_source -> v_key) > 1000
        or exists (select 1 from jsonb_array_elements(v_source -> v_key) g where jsonb_typeof(g) <> 'string')) then
      perform bastion_private.raise_error('invalid_spec', 400, format('spec.source.%s must be at most 1000 glob patterns', v_key), jsonb_build_object('field', 'spec.source.' || v_key, 'reason', 'shape'));
    end if;
  end loop;
  v_target := check_job_fields.spec -> 'target';
  if jsonb_typeof(v_target) is distinct from 'object' then
    perform bastion_private.raise_error('invalid_spec', 400, 'spec.target must be an object', jsonb_build_object('field', 'spec.target', 'reason', 'shape'));
  end if;
  if coalesce(v_target ->> 'type', '') not in ('local_dir', 'webdav') then
    perform bastion_private.raise_error('invalid_spec', 400, 'spec.target.type must be local_dir or webdav', jsonb_build_object('field', 'spec.target.type', 'reason', 'unknown_type'));
  end if;
  -- Only the locating fields: a credential must never be stored in a spec (it goes in a secret).
  if exists (select 1 from jsonb_object_keys(v_target) k where k not in ('type', 'base_dir', 'base_url', 'secret_name')) then
    perform bastion_private.raise_error('invalid_spec', 400, 'spec.target has an unknown key; credentials belong in a secret (spec.target.secret_name)', jsonb_build_object('field', 'spec.target', 'reason', 'unknown_key'));
  end if;
  if v_target ->> 'type' = 'local_dir' then
    if left(v_target ->> 'base_dir', 1) is distinct from '/' then
      perform bastion_private.raise_error('invalid_spec', 400, 'spec.target.base_dir must be an absolute path', jsonb_build_object('field', 'spec.target.base_dir', 'reason', 'not_absolute'));
    end if;
  elsif v_target ->> 'type' = 'webdav' then
    if coalesce(v_target ->> 'base_url', '') !~* '^https?://[^/?#@[:space:]]+(/[^?#[:space:]]*)?$' then
      perform bastion_private.raise_error('invalid_spec', 400, 'spec.target.base_url must be an http(s) URL without credentials, query or fragment', jsonb_build_object('field', 'spec.target.base_url', 'reason', 'shape'));
    end if;
    if coalesce(v_target ->> 'secret_name', '') !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' then
      perform bastion_private.raise_error('invalid_spec', 400, 'spec.target.secret_name must name a secret (letters, digits, ".", "_", "-")', jsonb_build_object('field', 'spec.target.secret_name', 'reason', 'shape'));
    end if;
  else
    perform bastion_private.raise_error('invalid_spec', 400, 'spec.target.type must be local_dir or webdav', jsonb_build_object('field', 'spec.target.type', 'reason', 'unknown_type'));
  end if;
  if coalesce(check_job_fields.spec ->> 'format', 'archive_v1') not in ('archive_v1', 'raw_tree_v1') then
    perform bastion_private.raise_error('invalid_spec', 400, 'spec.format must be archive_v1 or raw_tree_v1', jsonb_build_object('field', 'spec.format', 'reason', 'unknown_format'));
  end if;
  if check_job_fields.spec ->> 'format' = 'raw_tree_v1' and coalesce(check_job_fields.spec -> 'encryption' ->> 'type', 'none') <> 'none' then
    perform bastion_private.raise_error('invalid_spec', 400, 'raw_tree_v1 stores plain files and cannot be encrypted', jsonb_build_object('field', 'spec.encryption', 'reason', 'unsupported_with_raw_tree'));
  end if;
end
$$;
comment on function bastion_private.check_job_fields(text, text, text, text, bastion.overlap_policy, jsonb) is 'Validate the fields of a job for create_job/update_job (the node through check_node_is_usable); raises invalid_input, node_not_found, agent_revoked (once agents exist), invalid_schedule, invalid_timezone or invalid_spec naming the field.';

create function bastion.create_job(name text, node_id text, schedule text, schedule_timezone text, overlap_policy bastion.overlap_policy, spec jsonb) returns bastion.jobs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_job bastion.jobs;
begin
  perform bastion_private.check_job_fields(create_job.name, create_job.node_id, create_job.schedule, create_job.schedule_timezone, create_job.overlap_policy, create_job.spec);
  if exists (select 1 from bastion.jobs j where lower(j.name) = lower(create_job.name) and j.archived_at is null) then
    perform bastion_private.raise_error('job_name_taken', 409, 'another job already has this name', jsonb_build_object('field', 'name'));
  end if;
  begin
    insert into bastion.jobs (name, node_id, schedule, schedule_timezone, overlap_policy, spec, created_by, schedule_cursor)
    values (create_job.name, create_job.node_id, create_job.schedule, create_job.schedule_timezone, create_job.overlap_policy, create_job.spec,
            bastion_private.current_user_id(), now())
    returning * into v_job;
  exception when unique_violation then
    -- A concurrent create with the same name won the race.
    perform bastion_private.raise_error('job_name_taken', 409, 'another job already has this name', jsonb_build_object('field', 'name'));
  end;
  return v_job;
end
$$;
comment on function bastion.create_job(text, text, text, text, bastion.overlap_policy, jsonb) is 'Create a job (admin). schedule NULL = manual only. Errors: invalid_input, invalid_spec, invalid_schedule, invalid_timezone, node_not_found, job_name_taken. Clients validate the spec with core/job-spec.ts first; this checks what SQL can.';
grant execute on function bastion.create_job(text, text, text, text, bastion.overlap_policy, jsonb) to bastion_admin;

create function bastion.update_job(job_id uuid, expected_updated_at timestamptz, name text, node_id text, schedule text, schedule_timezone text, overlap_policy bastion.overlap_policy, spec jsonb) returns bastion.jobs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_job bastion.jobs;
begin
  select * into v_job from bastion.jobs j where j.id = update_job.job_id for update;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', update_job.job_id));
  end if;
  if v_job.archived_at is not null then
    perform bastion_private.raise_error('job_archived', 409, 'the job is archived; unarchive it before editing', jsonb_build_object('job_id', update_job.job_id));
  end if;
  -- Optimistic concurrency at millisecond precision: clients (JavaScript
  -- Dates) round-trip updated_at in milliseconds.
  if update_job.expected_updated_at is not null
     and date_trunc('milliseconds', v_job.updated_at) <> date_trunc('milliseconds', update_job.expected_updated_at) then
    perform bastion_private.raise_error('job_changed', 409, 'the job was changed since it was loaded', jsonb_build_object('job_id', update_job.job_id, 'updated_at', v_job.updated_at));
  end if;
  perform bastion_private.check_job_fields(update_job.name, update_job.node_id, update_job.schedule, update_job.schedule_timezone, update_job.overlap_policy, update_job.spec);
  if exists (select 1 from bastion.jobs j where lower(j.name) = lower(update_job.name) and j.archived_at is null and j.id <> update_job.job_id) then
    perform bastion_private.raise_error('job_name_taken', 409, 'another job already has this name', jsonb_build_object('field', 'name'));
  end if;
  begin
    update bastion.jobs j set
      name = update_job.name,
      node_id = update_job.node_id,
      schedule = update_job.schedule,
      schedule_timezone = update_job.schedule_timezone,
      overlap_policy = update_job.overlap_policy,
      spec = update_job.spec,
      -- A changed schedule starts counting from now: editing never fires a slot that already passed.
      schedule_cursor = case
        when j.schedule is distinct from update_job.schedule or j.schedule_timezone is distinct from update_job.schedule_timezone
        then greatest(j.schedule_cursor, now()) else j.schedule_cursor end,
      updated_at = greatest(now(), j.updated_at + interval '1 millisecond')
    where j.id = update_job.job_id
    returning * into v_job;
  exception when unique_violation then
    perform bastion_private.raise_error('job_name_taken', 409, 'another job already has this name', jsonb_build_object('field', 'name'));
  end;
  return v_job;
end
$$;
comment on function bastion.update_job(uuid, timestamptz, text, text, text, text, bastion.overlap_policy, jsonb) is 'Replace every editable field of a job (admin). expected_updated_at is the updated_at the client loaded (job_changed when it moved on; NULL skips the check). Queued runs use the new spec when they start. Errors as create_job plus job_not_found, job_archived, job_changed.';
grant execute on function bastion.update_job(uuid, timestamptz, text, text, text, text, bastion.overlap_policy, jsonb) to bastion_admin;

-- ---------------------------------------------------------------------------
-- Secrets (node-scoped, encrypted by the caller: engine/secrets/secret-box.ts)

create type bastion.secret_kind as enum ('webdav', 'backup_age_identity');
comment on type bastion.secret_kind is 'What a secret holds: webdav = JSON {username, password} for WebDAV targets; backup_age_identity = an age identity that decrypts encrypted snapshots.';

create table bastion_private.secrets (
  node_id text not null constraint secrets_node_id_format check (bastion_private.is_node_id(node_id)),
  kind bastion.secret_kind not null,
  name text not null constraint secrets_name_format check (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
  key_id text not null constraint secrets_key_id_format check (key_id ~ '^[0-9a-f]{16}$'),
  nonce bytea not null constraint secrets_nonce_length check (octet_length(nonce) = 12),
  ciphertext bytea not null constraint secrets_ciphertext_length check (octet_length(ciphertext) between 17 and 65552),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  updated_by uuid references bastion.users (id) on delete set null,
  primary key (kind, node_id, name)
);
comment on table bastion_private.secrets is 'Credentials Bastion uses on behalf of a node (WebDAV logins, age identities), encrypted with AES-256-GCM under the hub''s secret key; the associated data binds each ciphertext to its node, kind and name, so a row copied elsewhere does not decrypt.';
comment on column bastion_private.secrets.node_id is 'Node scope: ''hub'' or an agent id. A WebDAV snapshot is deleted with the secret of its node scope.';
comment on column bastion_private.secrets.kind is 'What the secret holds (see type secret_kind).';
comment on column bastion_private.secrets.name is 'Name jobs refer to (spec.target.secret_name).';
comment on column bastion_private.secrets.key_id is 'Fingerprint of the secret key that encrypted it (first 8 bytes of SHA-256 over a label and the key, hex); tells a wrong key from a damaged row.';
comment on column bastion_private.secrets.nonce is 'AES-GCM nonce (12 random bytes, new for every write).';
comment on column bastion_private.secrets.ciphertext is 'AES-256-GCM ciphertext followed by its 16-byte tag; AAD = node_id:kind:name.';
comment on column bastion_private.secrets.created_at is 'When the secret was first stored.';
comment on column bastion_private.secrets.updated_at is 'When its value was last replaced.';
comment on column bastion_private.secrets.updated_by is 'User who stored the current value (NULL from the CLI).';

create function bastion.put_secret(node_id text, kind bastion.secret_kind, name text, key_id text, nonce bytea, ciphertext bytea) returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_created boolean;
begin
  perform bastion_private.check_node_is_usable(put_secret.node_id, 'node_id');
  if put_secret.kind is null then
    perform bastion_private.raise_error('invalid_secret', 400, 'kind is required', jsonb_build_object('field', 'kind', 'reason', 'required'));
  end if;
  if put_secret.name is null or put_secret.name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' then
    perform bastion_private.raise_error('invalid_secret', 400, 'name must be 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit', jsonb_build_object('field', 'name', 'reason', 'format'));
  end if;
  if put_secret.key_id is null or put_secret.key_id !~ '^[0-9a-f]{16}$'
     or put_secret.nonce is null or octet_length(put_secret.nonce) <> 12
     or put_secret.ciphertext is null or octet_length(put_secret.ciphertext) not between 17 and 65552 then
    perform bastion_private.raise_error('invalid_secret', 400, 'key_id, nonce and ciphertext must come from engine/secrets (AES-256-GCM: 12-byte nonce, ciphertext + 16-byte tag, at most 64 KiB)', jsonb_build_object('field', 'ciphertext', 'reason', 'format'));
  end if;
  insert into bastion_private.secrets as s (node_id, kind, name, key_id, nonce, ciphertext, updated_by)
  values (put_secret.node_id, put_secret.kind, put_secret.name, put_secret.key_id, put_secret.nonce, put_secret.ciphertext, bastion_private.current_user_id())
  on conflict (kind, node_id, name) do update
    set key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = now(), updated_by = excluded.updated_by
  returning (xmax = 0) into v_created;
  return v_created;
end
$$;
comment on function bastion.put_secret(text, bastion.secret_kind, text, text, bytea, bytea) is 'Store or replace a secret (admin). The caller encrypts (engine/secrets); this function never sees plaintext. Returns true when the secret is new.';
grant execute on function bastion.put_secret(text, bastion.secret_kind, text, text, bytea, bytea) to bastion_admin;

create function bastion.delete_secret(node_id text, kind bastion.secret_kind, name text) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  delete from bastion_private.secrets s
   where s.node_id = delete_secret.node_id and s.kind = delete_secret.kind and s.name = delete_secret.name;
  if not found then
    perform bastion_private.raise_error('secret_not_found', 404, 'secret not found', jsonb_build_object('node_id', delete_secret.node_id, 'kind', delete_secret.kind, 'name', delete_secret.name));
  end if;
end
$$;
comment on function bastion.delete_secret(text, bastion.secret_kind, text) is 'Delete a secret (admin). Runs, snapshot deletes and cleanups that need it fail with a config error until it is stored again.';
grant execute on function bastion.delete_secret(text, bastion.secret_kind, text) to bastion_admin;

create function bastion.list_secrets() returns table (node_id text, kind bastion.secret_kind, name text, key_id text, created_at timestamptz, updated_at timestamptz)
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select s.node_id, s.kind, s.name, s.key_id, s.created_at, s.updated_at
    from bastion_private.secrets s
   order by s.node_id, s.kind, s.name
$$;
comment on function bastion.list_secrets() is 'Names, kinds, nodes and times of every secret (admin); never the value.';
grant execute on function bastion.list_secrets() to bastion_admin;

-- ---------------------------------------------------------------------------
-- Runs

create index runs_running_heartbeat_idx on bastion.runs (heartbeat_at) where status = 'running';

create function bastion_private.enqueue_run_attempt(run_id uuid, job_id uuid) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  -- One graphile-worker job per queued run. The named queue serialises the
  -- runs of one job; the key makes a duplicate request collapse and lets the
  -- watchdog find the job of a run. max_attempts covers a task that throws
  -- before it could record anything (database down): start_run makes a
  -- repeated delivery harmless.
  perform graphile_worker.add_job(
    identifier => 'run-backup',
    payload => json_build_object('run_id', enqueue_run_attempt.run_id),
    queue_name => 'run-backup:' || enqueue_run_attempt.job_id::text,
    max_attempts => 5,
    job_key => 'run-backup:' || enqueue_run_attempt.run_id::text,
    job_key_mode => 'replace');
end
$$;
comment on function bastion_private.enqueue_run_attempt(uuid, uuid) is 'Add the graphile-worker job that executes a queued run: task run-backup, queue run-backup:<job_id>, key run-backup:<run_id>.';

create function bastion_private.queue_run(job bastion.jobs, trigger bastion.run_trigger, scheduled_for timestamptz, requested_by uuid) returns bastion.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run bastion.runs;
  v_active uuid;
begin
  -- The caller holds the job row lock, so the overlap check below and the
  -- insert are atomic with respect to other requests for the same job.
  insert into bastion.runs (job_id, node_id, status, trigger, scheduled_for, requested_by)
  values ((queue_run.job).id, (queue_run.job).node_id, 'queued', queue_run.trigger, queue_run.scheduled_for, queue_run.requested_by)
  on conflict (job_id, scheduled_for) where scheduled_for is not null do nothing
  returning * into v_run;
  if v_run.id is null then
    return null; -- this schedule slot has its run already
  end if;
  if (queue_run.job).overlap_policy = 'reject' then
    select r.id into v_active from bastion.runs r
     where r.job_id = (queue_run.job).id and r.status in ('queued', 'running') and r.id <> v_run.id
     order by r.created_at limit 1;
    if v_active is not null then
      update bastion.runs r set status = 'rejected', ended_at = now(), error_code = 'overlap_rejected',
             error = format('run %s of this job is queued or running and the overlap policy is reject', v_active)
       where r.id = v_run.id returning * into v_run;
      perform bastion_private.append_run_event(v_run.id, 'warn', 'rejected', v_run.error,
        jsonb_build_object('error_code', 'overlap_rejected', 'active_run_id', v_active, 'trigger', queue_run.trigger));
      return v_run;
    end if;
  end if;
  perform bastion_private.enqueue_run_attempt(v_run.id, v_run.job_id);
  perform bastion_private.append_run_event(v_run.id, 'info', 'queued',
    case queue_run.trigger when 'schedule' then format('queued for the schedule slot %s', queue_run.scheduled_for) else 'queued by request' end,
    jsonb_strip_nulls(jsonb_build_object('trigger', queue_run.trigger, 'scheduled_for', queue_run.scheduled_for, 'requested_by', queue_run.requested_by)));
  select * into v_run from bastion.runs r where r.id = v_run.id;
  return v_run;
end
$$;
comment on function bastion_private.queue_run(bastion.jobs, bastion.run_trigger, timestamptz, uuid) is 'Insert a run for a locked job and queue it, or record it rejected under overlap policy reject; NULL when the schedule slot already has a run.';

create function bastion.request_run(job_id uuid) returns bastion.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_job bastion.jobs;
begin
  select * into v_job from bastion.jobs j where j.id = request_run.job_id for update;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', request_run.job_id));
  end if;
  if v_job.archived_at is not null then
    perform bastion_private.raise_error('job_archived', 409, 'the job is archived; unarchive it to run it', jsonb_build_object('job_id', request_run.job_id));
  end if;
  return bastion_private.queue_run(v_job, 'manual', null, bastion_private.current_user_id());
end
$$;
comment on function bastion.request_run(uuid) is 'Run a job now (operator). Returns the run: queued (it waits for earlier runs of the job), or rejected with error_code overlap_rejected when the job''s overlap policy is reject and another run is queued or running. Errors: job_not_found, job_archived.';
grant execute on function bastion.request_run(uuid) to bastion_operator;

create function bastion.schedule_run(job_id uuid, slot timestamptz) returns bastion.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_job bastion.jobs;
begin
  if schedule_run.slot is null or schedule_run.slot > now() + interval '1 minute' then
    perform bastion_private.raise_error('invalid_input', 400, 'slot must be a schedule slot that has come', jsonb_build_object('field', 'slot'));
  end if;
  -- Moving the cursor locks the job row: concurrent schedulers for the same
  -- slot queue behind it and then find the cursor already at the slot.
  update bastion.jobs j set schedule_cursor = schedule_run.slot
   where j.id = schedule_run.job_id and j.archived_at is null and j.schedule is not null and j.schedule_cursor < schedule_run.slot
  returning * into v_job;
  if not found then
    return null;
  end if;
  -- queue_run's insert … on conflict do nothing (unique index
  -- runs_job_schedule_slot_key) keeps one run per slot even if the cursor was
  -- moved back by hand.
  return bastion_private.queue_run(v_job, 'schedule', schedule_run.slot, null);
end
$$;
comment on function bastion.schedule_run(uuid, timestamptz) is 'Scheduler (worker): create the run of a cron slot if the job is scheduled, not archived and the slot is after its schedule_cursor; returns it, or NULL when there is nothing to do. Safe to call from many workers at once: one run per slot.';

create function bastion_private.check_target_snapshot(snapshot jsonb, node_id text) returns void
language plpgsql stable
as $$
#variable_conflict use_column
declare
  v_target jsonb := check_target_snapshot.snapshot -> 'target';
  v_keys text[];
begin
  if jsonb_typeof(check_target_snapshot.snapshot) is distinct from 'object' or jsonb_typeof(v_target) is distinct from 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'target_snapshot must be {node_id, target}', jsonb_build_object('field', 'target_snapshot'));
  end if;
  select array_agg(k order by k) into v_keys from jsonb_object_keys(check_target_snapshot.snapshot) k;
  if v_keys <> array['node_id', 'target'] or check_target_snapshot.snapshot ->> 'node_id' is distinct from check_target_snapshot.node_id then
    perform bastion_private.raise_error('invalid_input', 400, 'target_snapshot must hold exactly node_id (the run''s node) and target', jsonb_build_object('field', 'target_snapshot'));
  end if;
  select array_agg(k order by k) into v_keys from jsonb_object_keys(v_target) k;
  -- Exactly the locating fields: a snapshot never carries credentials.
  if not ((v_keys = array['base_dir', 'type'] and v_target ->> 'type' = 'local_dir' and left(v_target ->> 'base_dir', 1) = '/')
       or (v_keys = array['base_url', 'secret_name', 'type'] and v_target ->> 'type' = 'webdav'
           and v_target ->> 'base_url' ~* '^https?://[^/?#@[:space:]]+(/[^?#[:space:]]*)?$')) then
    perform bastion_private.raise_error('invalid_input', 400, 'target_snapshot.target must be {type: local_dir, base_dir} or {type: webdav, base_url without credentials, query or fragment, secret_name}', jsonb_build_object('field', 'target_snapshot.target'));
  end if;
end
$$;
comment on function bastion_private.check_target_snapshot(jsonb, text) is 'Raise unless a target snapshot has exactly the locating fields (no credentials) and the run''s node.';

create function bastion.start_run(run_id uuid, target_snapshot jsonb) returns bastion.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run bastion.runs;
  v_job bastion.jobs;
  v_resumed boolean;
begin
  select * into v_run from bastion.runs r where r.id = start_run.run_id for update;
  if not found then
    perform bastion_private.raise_error('run_not_found', 404, 'run not found', jsonb_build_object('run_id', start_run.run_id));
  end if;
  if v_run.status <> 'queued' then
    return null; -- a stale or repeated delivery: someone else started or ended it
  end if;
  select * into v_job from bastion.jobs j where j.id = v_run.job_id;
  if v_job.archived_at is not null then
    update bastion.runs r set status = 'canceled', ended_at = now(), error_code = 'job_archived', error = 'the job was archived before the run started'
     where r.id = v_run.id;
    perform bastion_private.append_run_event(v_run.id, 'warn', 'canceled', 'the job was archived before the run started', jsonb_build_object('error_code', 'job_archived'));
    return null;
  end if;
  perform bastion_private.check_target_snapshot(start_run.target_snapshot, v_run.node_id);
  -- A run that resumes after a shutdown must write where it started writing.
  if v_run.target_snapshot is not null and v_run.target_snapshot <> start_run.target_snapshot then
    perform bastion_private.raise_error('target_changed', 409, 'the job''s target changed after this run started writing',
      jsonb_build_object('run_id', v_run.id, 'target_snapshot', v_run.target_snapshot));
  end if;
  v_resumed := v_run.started_at is not null;
  update bastion.runs r set status = 'running', started_at = coalesce(r.started_at, now()), heartbeat_at = now(), target_snapshot = start_run.target_snapshot
   where r.id = v_run.id;
  perform bastion_private.append_run_event(v_run.id, 'info', 'start',
    case when v_resumed then format('resumed on %s', v_run.node_id) else format('started on %s', v_run.node_id) end,
    jsonb_build_object('node_id', v_run.node_id, 'target_type', start_run.target_snapshot -> 'target' ->> 'type', 'resumed', v_resumed));
  select * into v_run from bastion.runs r where r.id = v_run.id;
  return v_run;
end
$$;
comment on function bastion.start_run(uuid, jsonb) is 'Worker: claim a queued run (queued → running), record its target snapshot (no credentials) and a start event. NULL when the run is not queued any more (repeated delivery) or its job was archived (the run is canceled). Errors: run_not_found, invalid_input, target_changed.';

create function bastion.heartbeat_run(run_id uuid, progress jsonb default null, progress_message text default null) returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
begin
  if heartbeat_run.progress is not null and jsonb_typeof(heartbeat_run.progress) <> 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'progress must be a JSON object', jsonb_build_object('field', 'progress'));
  end if;
  update bastion.runs r set heartbeat_at = now(), progress = coalesce(heartbeat_run.progress, r.progress)
   where r.id = heartbeat_run.run_id and r.status = 'running';
  if not found then
    return false;
  end if;
  if heartbeat_run.progress_message is not null then
    perform bastion_private.append_run_event(heartbeat_run.run_id, 'info', 'progress', heartbeat_run.progress_message, heartbeat_run.progress);
  end if;
  return true;
end
$$;
comment on function bastion.heartbeat_run(uuid, jsonb, text) is 'Worker: keep a running run alive (heartbeat_at), store its latest progress and, with a message, append a progress event (the worker sends at most one a second). False when the run is not running any more: the worker must stop.';

create function bastion.upsert_run_artifact(run_id uuid) returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run bastion.runs;
  v_backup jsonb;
  v_files bigint;
  v_dirs bigint;
  v_bytes bigint;
  v_transfer bigint;
begin
  select * into v_run from bastion.runs r where r.id = upsert_run_artifact.run_id;
  if not found or v_run.status <> 'success' or v_run.ended_at is null or v_run.target_snapshot is null then
    return false;
  end if;
  -- Metrics (reference §1.4): the summary wins per field (ours at the top
  -- level, the reference's under summary.metrics); the progress only fills gaps.
  v_backup := v_run.progress -> 'detail' -> 'backup';
  v_files := coalesce(bastion_private.jsonb_count(v_run.summary -> 'source_total' -> 'files'), bastion_private.jsonb_count(v_run.summary -> 'metrics' -> 'source_total' -> 'files'),
                      bastion_private.jsonb_count(v_backup -> 'source_total' -> 'files'), bastion_private.jsonb_count(v_run.progress -> 'files_total'));
  v_dirs := coalesce(bastion_private.jsonb_count(v_run.summary -> 'source_total' -> 'dirs'), bastion_private.jsonb_count(v_run.summary -> 'metrics' -> 'source_total' -> 'dirs'),
                     bastion_private.jsonb_count(v_backup -> 'source_total' -> 'dirs'), bastion_private.jsonb_count(v_run.progress -> 'dirs_total'));
  v_bytes := coalesce(bastion_private.jsonb_count(v_run.summary -> 'source_total' -> 'bytes'), bastion_private.jsonb_count(v_run.summary -> 'metrics' -> 'source_total' -> 'bytes'),
                      bastion_private.jsonb_count(v_backup -> 'source_total' -> 'bytes'), bastion_private.jsonb_count(v_run.progress -> 'bytes_total'));
  v_transfer := coalesce(bastion_private.jsonb_count(v_run.summary -> 'transfer_total_bytes'), bastion_private.jsonb_count(v_run.summary -> 'metrics' -> 'transfer_total_bytes'),
                         bastion_private.jsonb_count(v_backup -> 'transfer_total_bytes'),
                         case when v_run.progress ->> 'stage' = 'upload' then bastion_private.jsonb_count(v_run.progress -> 'total' -> 'bytes') end);
  insert into bastion.run_artifacts as a (run_id, job_id, node_id, target_type, target_snapshot, artifact_format, status, started_at, ended_at,
                                          source_files, source_dirs, source_bytes, transfer_bytes)
  values (v_run.id, v_run.job_id, v_run.target_snapshot ->> 'node_id', (v_run.target_snapshot -> 'target' ->> 'type')::bastion.target_type, v_run.target_snapshot,
          case when v_run.summary ->> 'artifact_format' = 'raw_tree_v1' then 'raw_tree_v1' else 'archive_v1' end::bastion.artifact_format,
          'present', v_run.started_at, v_run.ended_at, v_files, v_dirs, v_bytes, v_transfer)
  on conflict (run_id) do update set
    -- Never status, pin or delete fields: a snapshot that is being deleted or
    -- was deleted stays so however often a run is re-indexed.
    job_id = excluded.job_id, node_id = excluded.node_id, target_type = excluded.target_type, target_snapshot = excluded.target_snapshot,
    artifact_format = excluded.artifact_format, started_at = excluded.started_at, ended_at = excluded.ended_at,
    source_files = excluded.source_files, source_dirs = excluded.source_dirs, source_bytes = excluded.source_bytes,
    transfer_bytes = excluded.transfer_bytes, updated_at = now();
  return true;
end
$$;
comment on function bastion.upsert_run_artifact(uuid) is 'Index the snapshot of a successful run (worker/DBA): insert it present, or refresh an existing row''s location, times and metrics without touching its status, pin or delete fields. False (nothing done) unless the run succeeded and has a target snapshot.';

create function bastion.finish_run_success(run_id uuid, summary jsonb) returns bastion.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run bastion.runs;
begin
  if finish_run_success.summary is null or jsonb_typeof(finish_run_success.summary) <> 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'summary must be a JSON object', jsonb_build_object('field', 'summary'));
  end if;
  update bastion.runs r set status = 'success', ended_at = greatest(now(), r.started_at), heartbeat_at = now(), summary = finish_run_success.summary
   where r.id = finish_run_success.run_id and r.status = 'running'
  returning * into v_run;
  if not found then
    if not exists (select 1 from bastion.runs r where r.id = finish_run_success.run_id) then
      perform bastion_private.raise_error('run_not_found', 404, 'run not found', jsonb_build_object('run_id', finish_run_success.run_id));
    end if;
    perform bastion_private.raise_error('run_not_running', 409, 'the run is not running (the watchdog may have failed it)', jsonb_build_object('run_id', finish_run_success.run_id));
  end if;
  perform bastion_private.append_run_event(v_run.id, 'info', 'complete', 'backup complete',
    jsonb_strip_nulls(jsonb_build_object(
      'duration_ms', (extract(epoch from (v_run.ended_at - v_run.started_at)) * 1000)::bigint,
      'artifact_format', finish_run_success.summary ->> 'artifact_format',
      'files', bastion_private.jsonb_count(finish_run_success.summary -> 'source_total' -> 'files'),
      'dirs', bastion_private.jsonb_count(finish_run_success.summary -> 'source_total' -> 'dirs'),
      'bytes', bastion_private.jsonb_count(finish_run_success.summary -> 'source_total' -> 'bytes'),
      'transfer_bytes', bastion_private.jsonb_count(finish_run_success.summary -> 'transfer_total_bytes'),
      'warnings', bastion_private.jsonb_count(finish_run_success.summary -> 'warnings' -> 'total'))));
  perform bastion.upsert_run_artifact(v_run.id);
  select * into v_run from bastion.runs r where r.id = v_run.id;
  return v_run;
end
$$;
comment on function bastion.finish_run_success(uuid, jsonb) is 'Worker: a running run succeeded — status success, summary stored, complete event, snapshot indexed (upsert_run_artifact), in one transaction. Errors: run_not_found, run_not_running.';

create function bastion.fail_run(run_id uuid, error_code text, error text, fields jsonb default null) returns bastion.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run bastion.runs;
  v_error text := bastion_private.clean_error_text(fail_run.error);
begin
  if fail_run.error_code is null or fail_run.error_code !~ '^[a-z][a-z0-9_]{0,63}$' then
    perform bastion_private.raise_error('invalid_input', 400, 'error_code must be a stable code (lower case, digits, _)', jsonb_build_object('field', 'error_code'));
  end if;
  if fail_run.fields is not null and jsonb_typeof(fail_run.fields) <> 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'fields must be a JSON object', jsonb_build_object('field', 'fields'));
  end if;
  if v_error = '' then
    v_error := fail_run.error_code;
  end if;
  update bastion.runs r set status = 'failed', ended_at = greatest(now(), r.started_at), error_code = fail_run.error_code, error = v_error
   where r.id = fail_run.run_id and r.status in ('queued', 'running')
  returning * into v_run;
  if not found then
    if not exists (select 1 from bastion.runs r where r.id = fail_run.run_id) then
      perform bastion_private.raise_error('run_not_found', 404, 'run not found', jsonb_build_object('run_id', fail_run.run_id));
    end if;
    perform bastion_private.raise_error('run_not_running', 409, 'the run already ended', jsonb_build_object('run_id', fail_run.run_id));
  end if;
  perform bastion_private.append_run_event(v_run.id, 'error', 'failed', v_error,
    coalesce(fail_run.fields, '{}'::jsonb) || jsonb_build_object('error_code', fail_run.error_code));
  -- Not executing any more: drop a pending attempt (a queued run failed before it started).
  perform graphile_worker.remove_job('run-backup:' || v_run.id::text);
  return v_run;
end
$$;
comment on function bastion.fail_run(uuid, text, text, jsonb) is 'Worker: a queued or running run failed — status failed with a stable error_code and a one-line, credential-free error (cleaned again here), failed event with fields. Errors: run_not_found, run_not_running, invalid_input.';

create function bastion.requeue_run(run_id uuid, reason text) returns bastion.runs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_run bastion.runs;
begin
  update bastion.runs r set status = 'queued', heartbeat_at = null
   where r.id = requeue_run.run_id and r.status = 'running'
  returning * into v_run;
  if not found then
    perform bastion_private.raise_error('run_not_running', 409, 'only a running run can be put back in the queue', jsonb_build_object('run_id', requeue_run.run_id));
  end if;
  perform bastion_private.enqueue_run_attempt(v_run.id, v_run.job_id);
  perform bastion_private.append_run_event(v_run.id, 'warn', 'requeued', coalesce(bastion_private.clean_error_text(requeue_run.reason), 'requeued'), null);
  return v_run;
end
$$;
comment on function bastion.requeue_run(uuid, text) is 'Worker: put a running run back in the queue (its worker is shutting down); the next attempt resumes the same run directory. Error: run_not_running.';

create function bastion.recover_runs(stale_after interval default interval '45 seconds', limit_runs integer default 500) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  r record;
  v_lost integer := 0;
  v_requeued integer := 0;
  v_exhausted integer := 0;
  v_error text;
begin
  if recover_runs.stale_after is null or recover_runs.stale_after < interval '10 seconds' then
    perform bastion_private.raise_error('invalid_input', 400, 'stale_after must be at least 10 seconds (workers heartbeat every 10 s)', jsonb_build_object('field', 'stale_after'));
  end if;
  -- 1. Running runs whose worker stopped heartbeating: fail them, and release
  --    what graphile-worker still holds for the dead worker. Its job (and the
  --    job's named queue) stay locked for 4 hours otherwise, which would hold
  --    back every later run of the same job. force_unlock_workers is
  --    graphile-worker's documented recovery for crashed workers.
  for r in
    select x.id, x.heartbeat_at, x.started_at, j.locked_by
      from bastion.runs x
      left join graphile_worker.jobs j on j.key = 'run-backup:' || x.id::text
     where x.status = 'running' and coalesce(x.heartbeat_at, x.started_at) < now() - recover_runs.stale_after
     order by coalesce(x.heartbeat_at, x.started_at)
     limit recover_runs.limit_runs
     for update of x skip locked
  loop
    v_error := format('no heartbeat from the worker since %s', to_char(coalesce(r.heartbeat_at, r.started_at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'));
    update bastion.runs x set status = 'failed', ended_at = now(), error_code = 'worker_lost', error = v_error where x.id = r.id;
    perform bastion_private.append_run_event(r.id, 'error', 'failed', v_error,
      jsonb_strip_nulls(jsonb_build_object('error_code', 'worker_lost', 'last_heartbeat_at', coalesce(r.heartbeat_at, r.started_at), 'worker_id', r.locked_by)));
    if r.locked_by is not null then
      perform graphile_worker.force_unlock_workers(array[r.locked_by]);
    end if;
    perform graphile_worker.remove_job('run-backup:' || r.id::text);
    v_lost := v_lost + 1;
  end loop;

  -- 2. Queued runs whose graphile-worker job is gone (deleted by hand):
  --    queue them again so they do not wait forever.
  for r in
    select x.id, x.job_id from bastion.runs x
     where x.status = 'queued' and x.created_at < now() - interval '1 minute'
       and not exists (select 1 from graphile_worker.jobs j where j.key = 'run-backup:' || x.id::text)
     order by x.created_at
     limit recover_runs.limit_runs
     for update of x skip locked
  loop
    perform bastion_private.enqueue_run_attempt(r.id, r.job_id);
    perform bastion_private.append_run_event(r.id, 'warn', 'requeued', 'the run had no queue entry; queued again', null);
    v_requeued := v_requeued + 1;
  end loop;

  -- 3. Queued runs whose job used up its attempts (the task kept failing
  --    before it could record why): fail them with the queue's last error.
  for r in
    select x.id, j.last_error from bastion.runs x
      join graphile_worker.jobs j on j.key = 'run-backup:' || x.id::text
     where x.status = 'queued' and j.locked_at is null and j.attempts >= j.max_attempts
     limit recover_runs.limit_runs
     for update of x skip locked
  loop
    perform bastion.fail_run(r.id, 'internal_error', 'the worker could not execute the run: ' || coalesce(r.last_error, 'unknown error'), null);
    v_exhausted := v_exhausted + 1;
  end loop;

  return jsonb_build_object('lost', v_lost, 'requeued', v_requeued, 'exhausted', v_exhausted);
end
$$;
comment on function bastion.recover_runs(interval, integer) is 'Watchdog (worker, every minute): fail running runs without a heartbeat for stale_after (worker_lost) and release the dead worker''s graphile-worker locks; queue again queued runs that lost their queue entry; fail queued runs whose attempts are used up. Returns {lost, requeued, exhausted}.';
