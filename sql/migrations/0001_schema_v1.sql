-- Schema v1: schemas, roles, settings, users, sessions, jobs, runs, run events
-- and the snapshot index. Later capabilities add their own tables in new files.
--
-- Conventions every later migration follows:
-- * `bastion` is what the API exposes (PostGraphile reads it). Its tables are
--   written only through SQL functions; row-level security is on for every
--   table, and each table states which application role may read which rows.
-- * `bastion_private` holds secrets and internals and is never exposed.
-- * Application roles are NOLOGIN roles the gateway switches to per request:
--   bastion_viewer ⊂ bastion_operator ⊂ bastion_admin (each inherits the one
--   before). Functions are not executable by PUBLIC (default privileges below):
--   each migration grants EXECUTE to the lowest role allowed to call it, so a
--   viewer calling an operator function is refused by PostgreSQL itself.
-- * Domain errors are raised by bastion_private.raise_error(code, status, …):
--   the exception message is the stable code, SQLSTATE is 'BA' || HTTP status.
-- * Timestamps are timestamptz; ids are UUIDs; node ids are 'hub' or an agent UUID.

create schema bastion;
comment on schema bastion is 'Bastion: jobs, runs, snapshots and their queues. Exposed through GraphQL; rows are written only through the functions of this schema.';
create schema if not exists bastion_private; -- the migrator creates it first to hold its own bookkeeping table
comment on schema bastion_private is 'Bastion internals: password hashes, sessions, tokens, encrypted secrets, helper functions. Never exposed through the API.';

-- Roles are cluster-wide; several Bastion databases on one server share them.
do $$
begin
  begin
    create role bastion_viewer nologin;
  exception when duplicate_object or unique_violation then null;
  end;
  begin
    create role bastion_operator nologin;
  exception when duplicate_object or unique_violation then null;
  end;
  begin
    create role bastion_admin nologin;
  exception when duplicate_object or unique_violation then null;
  end;
end
$$;
grant bastion_viewer to bastion_operator;
grant bastion_operator to bastion_admin;
-- The login role that owns the schema (the one running migrations) must be able
-- to SET ROLE to any application role for the gateway's per-request switch.
do $$ begin execute format('grant bastion_admin to %I', current_user); end $$;

grant usage on schema bastion to bastion_viewer;
grant usage on schema bastion_private to bastion_viewer;
-- Per-schema default privileges can only add to the global defaults, so the
-- revoke has to be global (for functions this role creates in this database).
alter default privileges revoke execute on functions from public;

-- ---------------------------------------------------------------------------
-- Helpers

create function bastion_private.current_user_id() returns uuid
language sql stable
as $$
  -- Pooled connections return '' (not NULL) once a previous request set it.
  select nullif(current_setting('bastion.user_id', true), '')::uuid
$$;
comment on function bastion_private.current_user_id() is 'The Bastion user the current request acts for (set per transaction by the gateway), or NULL for workers and psql sessions.';
grant execute on function bastion_private.current_user_id() to bastion_viewer;

create function bastion_private.raise_error(code text, status integer, message text, details jsonb default null) returns void
language plpgsql
as $$
begin
  raise exception using
    message = code,
    errcode = 'BA' || status::text,
    detail = message,
    hint = coalesce(details::text, '');
end
$$;
comment on function bastion_private.raise_error(text, integer, text, jsonb) is 'Raise a domain error: message = stable code (core/errors.ts), SQLSTATE = BA<http status>, DETAIL = human message, HINT = JSON details.';
grant execute on function bastion_private.raise_error(text, integer, text, jsonb) to bastion_viewer;

create function bastion_private.is_node_id(value text) returns boolean
language sql immutable
as $$
  select value = 'hub' or value ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
$$;
comment on function bastion_private.is_node_id(text) is 'True for ''hub'' or a canonical agent UUID.';
grant execute on function bastion_private.is_node_id(text) to bastion_viewer;

-- ---------------------------------------------------------------------------
-- Enum types (GraphQL shows them as enums)

create type bastion.user_role as enum ('viewer', 'operator', 'admin');
comment on type bastion.user_role is 'viewer reads; operator also runs jobs, pins, deletes, retries, ignores and applies retention; admin also manages users, tokens, secrets and settings.';
create type bastion.run_status as enum ('queued', 'running', 'success', 'failed', 'canceled', 'rejected');
comment on type bastion.run_status is 'Lifecycle of a run: queued → running → success | failed | canceled; rejected when the overlap policy refused it.';
create type bastion.run_trigger as enum ('manual', 'schedule');
comment on type bastion.run_trigger is 'What started a run.';
create type bastion.overlap_policy as enum ('queue', 'reject');
comment on type bastion.overlap_policy is 'What a new run does while another run of the same job is active: wait its turn (queue) or be recorded as rejected.';
create type bastion.target_type as enum ('local_dir', 'webdav');
comment on type bastion.target_type is 'Kind of storage target holding snapshot data.';
create type bastion.artifact_format as enum ('archive_v1', 'raw_tree_v1');
comment on type bastion.artifact_format is 'On-disk format of a snapshot: tar+zstd(+age) parts, or a plain file tree under data/.';
create type bastion.snapshot_status as enum ('present', 'deleting', 'deleted', 'missing', 'error');
comment on type bastion.snapshot_status is 'present: data exists; deleting: a delete task is queued or running; deleted: removed by Bastion; missing: already gone when the delete ran; error: the delete is blocked or abandoned and needs attention.';
create type bastion.event_level as enum ('info', 'warn', 'error');
comment on type bastion.event_level is 'Severity of an event row.';

-- ---------------------------------------------------------------------------
-- Users and sessions

create table bastion.users (
  id uuid primary key default gen_random_uuid(),
  username text not null
    constraint users_username_format check (char_length(username) between 1 and 64 and username = btrim(username) and username !~ '[[:cntrl:]]'),
  role bastion.user_role not null default 'viewer',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  disabled_at timestamptz,
  last_login_at timestamptz
);
create unique index users_username_key on bastion.users (lower(username));
comment on table bastion.users is 'People who sign in to Bastion. Password hashes live in bastion_private.user_passwords.';
comment on column bastion.users.id is 'User id.';
comment on column bastion.users.username is 'Login name, unique without regard to case.';
comment on column bastion.users.role is 'Application role (see type user_role).';
comment on column bastion.users.created_at is 'When the user was created.';
comment on column bastion.users.updated_at is 'Last change of this row.';
comment on column bastion.users.disabled_at is 'Set when an admin disabled the user: no login, sessions and tokens refused.';
comment on column bastion.users.last_login_at is 'Last successful login.';

create table bastion_private.user_passwords (
  user_id uuid primary key references bastion.users (id) on delete cascade,
  password_hash text not null,
  updated_at timestamptz not null default now()
);
comment on table bastion_private.user_passwords is 'Password hashes (scrypt, PHC-style string with its parameters).';
comment on column bastion_private.user_passwords.user_id is 'The user.';
comment on column bastion_private.user_passwords.password_hash is 'scrypt hash with salt and cost parameters; never the password.';
comment on column bastion_private.user_passwords.updated_at is 'When the password was last set.';

create table bastion_private.sessions (
  token_hash bytea primary key constraint sessions_token_hash_length check (octet_length(token_hash) = 32),
  user_id uuid not null references bastion.users (id) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  last_seen_at timestamptz not null default now(),
  client_address text,
  user_agent text constraint sessions_user_agent_length check (char_length(user_agent) <= 512),
  constraint sessions_expiry_after_creation check (expires_at > created_at)
);
create index sessions_user_id_idx on bastion_private.sessions (user_id);
create index sessions_expires_at_idx on bastion_private.sessions (expires_at);
comment on table bastion_private.sessions is 'Server-side login sessions. The cookie holds a random token; only its SHA-256 is stored here.';
comment on column bastion_private.sessions.token_hash is 'SHA-256 of the session token from the cookie.';
comment on column bastion_private.sessions.user_id is 'The signed-in user.';
comment on column bastion_private.sessions.created_at is 'Login time.';
comment on column bastion_private.sessions.expires_at is 'Fixed expiry (7 days after login); not extended by use.';
comment on column bastion_private.sessions.last_seen_at is 'Last request made with this session.';
comment on column bastion_private.sessions.client_address is 'Client address at login (after trusted-proxy resolution).';
comment on column bastion_private.sessions.user_agent is 'User-Agent at login, cut to 512 characters.';

-- ---------------------------------------------------------------------------
-- Settings (one row)

create table bastion.settings (
  singleton boolean primary key default true constraint settings_singleton check (singleton),
  run_retention_days integer not null default 180
    constraint settings_run_retention_days_range check (run_retention_days between 1 and 36500),
  incomplete_cleanup_days integer not null default 7
    constraint settings_incomplete_cleanup_days_range check (incomplete_cleanup_days between 0 and 3650),
  default_retention jsonb not null default '{"enabled": false}'
    constraint settings_default_retention_object check (jsonb_typeof(default_retention) = 'object'),
  updated_at timestamptz not null default now(),
  updated_by uuid references bastion.users (id) on delete set null
);
insert into bastion.settings default values;
comment on table bastion.settings is 'Hub runtime settings; exactly one row.';
comment on column bastion.settings.singleton is 'Always true: keeps the table to one row.';
comment on column bastion.settings.run_retention_days is 'Ended runs older than this many days are pruned hourly, unless their snapshot is present, deleting or error.';
comment on column bastion.settings.incomplete_cleanup_days is 'Runs that never completed are cleaned from their target after this many days; 0 turns incomplete cleanup off.';
comment on column bastion.settings.default_retention is 'Retention policy inherited by every job whose spec.retention is null (core/retention-policy.ts).';
comment on column bastion.settings.updated_at is 'Last change.';
comment on column bastion.settings.updated_by is 'User who made the last change.';

-- ---------------------------------------------------------------------------
-- Jobs

create table bastion.jobs (
  id uuid primary key default gen_random_uuid(),
  name text not null
    constraint jobs_name_format check (char_length(name) between 1 and 200 and name = btrim(name) and name !~ '[[:cntrl:]]'),
  node_id text not null default 'hub' constraint jobs_node_id_format check (bastion_private.is_node_id(node_id)),
  schedule text constraint jobs_schedule_length check (char_length(schedule) between 1 and 200),
  schedule_timezone text not null default 'UTC' constraint jobs_schedule_timezone_length check (char_length(schedule_timezone) between 1 and 64),
  overlap_policy bastion.overlap_policy not null default 'queue',
  spec jsonb not null constraint jobs_spec_object check (jsonb_typeof(spec) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  created_by uuid references bastion.users (id) on delete set null,
  archived_at timestamptz,
  archived_by uuid references bastion.users (id) on delete set null,
  constraint jobs_archived_by_needs_archived_at check (archived_by is null or archived_at is not null)
);
create unique index jobs_active_name_key on bastion.jobs (lower(name)) where archived_at is null;
create index jobs_node_id_idx on bastion.jobs (node_id);
comment on table bastion.jobs is 'Backup jobs: what to back up (spec.source), where to (spec.target), how (format, encryption), when (schedule) and on which node.';
comment on column bastion.jobs.id is 'Job id (UUID; also a directory name on targets).';
comment on column bastion.jobs.name is 'Name, unique among jobs that are not archived (case-insensitive).';
comment on column bastion.jobs.node_id is 'Node that runs the job: ''hub'' or an agent id.';
comment on column bastion.jobs.schedule is 'Cron expression (5 or 6 fields) evaluated in schedule_timezone; NULL for manual-only jobs.';
comment on column bastion.jobs.schedule_timezone is 'IANA time zone for the schedule and for calendar retention buckets.';
comment on column bastion.jobs.overlap_policy is 'queue: runs of this job wait for each other; reject: a run requested while one is active is recorded as rejected.';
comment on column bastion.jobs.spec is 'Job spec, validated by core/job-spec.ts: v, source, target, format, encryption, part_size_bytes, retention (null = hub default).';
comment on column bastion.jobs.created_at is 'Creation time.';
comment on column bastion.jobs.updated_at is 'Last change.';
comment on column bastion.jobs.created_by is 'User who created the job.';
comment on column bastion.jobs.archived_at is 'Set when archived: never scheduled, hidden from lists unless asked for; history and snapshots stay.';
comment on column bastion.jobs.archived_by is 'User who archived the job.';

-- ---------------------------------------------------------------------------
-- Runs and their events

create table bastion.runs (
  id uuid primary key default gen_random_uuid(),
  job_id uuid not null references bastion.jobs (id) on delete cascade,
  node_id text not null constraint runs_node_id_format check (bastion_private.is_node_id(node_id)),
  status bastion.run_status not null default 'queued',
  trigger bastion.run_trigger not null,
  scheduled_for timestamptz,
  requested_by uuid references bastion.users (id) on delete set null,
  created_at timestamptz not null default now(),
  started_at timestamptz,
  ended_at timestamptz,
  heartbeat_at timestamptz,
  progress jsonb constraint runs_progress_object check (jsonb_typeof(progress) = 'object'),
  summary jsonb constraint runs_summary_object check (jsonb_typeof(summary) = 'object'),
  error_code text constraint runs_error_code_format check (error_code ~ '^[a-z][a-z0-9_]{0,63}$'),
  error text constraint runs_error_length check (octet_length(error) <= 1024),
  target_snapshot jsonb constraint runs_target_snapshot_object check (jsonb_typeof(target_snapshot) = 'object'),
  event_seq integer not null default 0 constraint runs_event_seq_nonnegative check (event_seq >= 0),
  constraint runs_ended_iff_final check ((status in ('success', 'failed', 'canceled', 'rejected')) = (ended_at is not null)),
  constraint runs_running_has_started_at check (status <> 'running' or started_at is not null),
  constraint runs_success_has_target_snapshot check (status <> 'success' or (target_snapshot is not null and started_at is not null)),
  constraint runs_failure_has_error_code check (status not in ('failed', 'rejected') or error_code is not null),
  constraint runs_ended_after_started check (ended_at is null or started_at is null or ended_at >= started_at),
  constraint runs_schedule_slot_only_for_schedule check (scheduled_for is null or trigger = 'schedule')
);
create unique index runs_job_schedule_slot_key on bastion.runs (job_id, scheduled_for) where scheduled_for is not null;
create index runs_job_created_idx on bastion.runs (job_id, created_at desc, id desc);
create index runs_active_idx on bastion.runs (job_id, created_at) where status in ('queued', 'running');
create index runs_ended_at_idx on bastion.runs (ended_at) where ended_at is not null;
comment on table bastion.runs is 'One execution of a job. A successful run leaves a snapshot (see run_artifacts).';
comment on column bastion.runs.id is 'Run id (UUID; also the run directory name on the target).';
comment on column bastion.runs.job_id is 'The job.';
comment on column bastion.runs.node_id is 'Node that executes (executed) the run: ''hub'' or an agent id, copied from the job when queued.';
comment on column bastion.runs.status is 'Lifecycle state (see type run_status).';
comment on column bastion.runs.trigger is 'manual or schedule.';
comment on column bastion.runs.scheduled_for is 'For scheduled runs: the cron slot; unique per job, so several schedulers create one run per slot.';
comment on column bastion.runs.requested_by is 'User who requested a manual run.';
comment on column bastion.runs.created_at is 'When the run was queued.';
comment on column bastion.runs.started_at is 'When execution started.';
comment on column bastion.runs.ended_at is 'When the run reached a final state.';
comment on column bastion.runs.heartbeat_at is 'Last sign of life from the executing worker; a running run whose heartbeat is older than 2 minutes is failed with worker_lost.';
comment on column bastion.runs.progress is 'Latest progress: {stage, files_done, files_total, bytes_done, bytes_total, …}.';
comment on column bastion.runs.summary is 'On success: {artifact_format, source_total {files, dirs, bytes}, transfer_total_bytes, entries_count, …}.';
comment on column bastion.runs.error_code is 'Stable error code of a failed or rejected run.';
comment on column bastion.runs.error is 'Single-line, credential-free error text (≤ 1 KiB).';
comment on column bastion.runs.target_snapshot is 'Where this run writes its data, frozen at run start: {node_id, target: {type: local_dir, base_dir} | {type: webdav, base_url (redacted), secret_name}}.';
comment on column bastion.runs.event_seq is 'Highest run_events.seq of this run; bumped under the row lock so event numbers have no gaps.';

create table bastion.run_events (
  run_id uuid not null references bastion.runs (id) on delete cascade,
  seq integer not null constraint run_events_seq_positive check (seq > 0),
  ts timestamptz not null default now(),
  level bastion.event_level not null,
  kind text not null constraint run_events_kind_format check (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
  message text not null constraint run_events_message_length check (char_length(message) <= 4096),
  fields jsonb constraint run_events_fields_object check (jsonb_typeof(fields) = 'object'),
  primary key (run_id, seq)
);
create index run_events_ts_idx on bastion.run_events (ts);
comment on table bastion.run_events is 'Append-only log of a run: start, progress (at most once a second), complete, failed, …';
comment on column bastion.run_events.run_id is 'The run.';
comment on column bastion.run_events.seq is '1, 2, 3, … per run, without gaps.';
comment on column bastion.run_events.ts is 'Event time.';
comment on column bastion.run_events.level is 'info, warn or error.';
comment on column bastion.run_events.kind is 'Machine-readable event kind (start, progress, complete, failed, …).';
comment on column bastion.run_events.message is 'Human-readable, credential-free message.';
comment on column bastion.run_events.fields is 'Structured details (durations, counts, error codes).';

create function bastion_private.append_run_event(p_run_id uuid, p_level bastion.event_level, p_kind text, p_message text, p_fields jsonb default null) returns integer
language plpgsql
as $$
declare
  v_seq integer;
begin
  -- The row lock on the run serialises concurrent writers; a rolled-back
  -- writer rolls back its bump too, so seq stays gapless.
  update bastion.runs set event_seq = event_seq + 1 where id = p_run_id returning event_seq into v_seq;
  if v_seq is null then
    perform bastion_private.raise_error('run_not_found', 404, 'run not found', jsonb_build_object('run_id', p_run_id));
  end if;
  insert into bastion.run_events (run_id, seq, level, kind, message, fields)
  values (p_run_id, v_seq, p_level, p_kind, left(p_message, 4096), p_fields);
  return v_seq;
end
$$;
comment on function bastion_private.append_run_event(uuid, bastion.event_level, text, text, jsonb) is 'Append one event to a run with the next gapless seq; returns the seq.';

-- ---------------------------------------------------------------------------
-- Snapshot index

create table bastion.run_artifacts (
  run_id uuid primary key references bastion.runs (id) on delete cascade,
  job_id uuid not null references bastion.jobs (id) on delete cascade,
  node_id text not null constraint run_artifacts_node_id_format check (bastion_private.is_node_id(node_id)),
  target_type bastion.target_type not null,
  target_snapshot jsonb not null constraint run_artifacts_target_snapshot_object check (jsonb_typeof(target_snapshot) = 'object'),
  artifact_format bastion.artifact_format not null,
  status bastion.snapshot_status not null default 'present',
  started_at timestamptz not null,
  ended_at timestamptz not null,
  source_files bigint constraint run_artifacts_source_files_nonnegative check (source_files >= 0),
  source_dirs bigint constraint run_artifacts_source_dirs_nonnegative check (source_dirs >= 0),
  source_bytes bigint constraint run_artifacts_source_bytes_nonnegative check (source_bytes >= 0),
  transfer_bytes bigint constraint run_artifacts_transfer_bytes_nonnegative check (transfer_bytes >= 0),
  pinned_at timestamptz,
  pinned_by uuid references bastion.users (id) on delete set null,
  pin_reason text constraint run_artifacts_pin_reason_length check (char_length(pin_reason) <= 200),
  pin_expires_at timestamptz,
  deleted_at timestamptz,
  deleted_by uuid references bastion.users (id) on delete set null,
  delete_reason text constraint run_artifacts_delete_reason_length check (char_length(delete_reason) <= 200),
  last_error_kind text,
  last_error text constraint run_artifacts_last_error_length check (octet_length(last_error) <= 1024),
  last_attempt_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint run_artifacts_target_type_matches_snapshot check (target_snapshot -> 'target' ->> 'type' = target_type::text),
  constraint run_artifacts_node_matches_snapshot check (target_snapshot ->> 'node_id' = node_id),
  constraint run_artifacts_ended_after_started check (ended_at >= started_at),
  constraint run_artifacts_pin_fields_need_pin check (pinned_at is not null or (pinned_by is null and pin_reason is null and pin_expires_at is null)),
  constraint run_artifacts_pin_expiry_after_pin check (pin_expires_at is null or pin_expires_at > pinned_at),
  constraint run_artifacts_deleted_has_deleted_at check ((status = 'deleted') = (deleted_at is not null))
);
create index run_artifacts_job_keyset_idx on bastion.run_artifacts (job_id, ended_at desc, run_id desc);
create index run_artifacts_job_status_keyset_idx on bastion.run_artifacts (job_id, status, ended_at desc, run_id desc);
create index run_artifacts_node_status_idx on bastion.run_artifacts (node_id, status);
create index run_artifacts_pinned_idx on bastion.run_artifacts (pinned_at) where pinned_at is not null;
comment on table bastion.run_artifacts is 'The snapshot index: one row per successful run that stored data on a target.';
comment on column bastion.run_artifacts.run_id is 'The run that produced the snapshot.';
comment on column bastion.run_artifacts.job_id is 'The job.';
comment on column bastion.run_artifacts.node_id is 'Node that holds (local_dir) or wrote (webdav) the data; deletes of local_dir data run there.';
comment on column bastion.run_artifacts.target_type is 'local_dir or webdav.';
comment on column bastion.run_artifacts.target_snapshot is 'Copy of runs.target_snapshot: where the data is, without credentials.';
comment on column bastion.run_artifacts.artifact_format is 'archive_v1 or raw_tree_v1.';
comment on column bastion.run_artifacts.status is 'present, deleting, deleted, missing or error (see type snapshot_status).';
comment on column bastion.run_artifacts.started_at is 'Run start.';
comment on column bastion.run_artifacts.ended_at is 'Run end; the list order and retention age use it.';
comment on column bastion.run_artifacts.source_files is 'Files in the source at backup time.';
comment on column bastion.run_artifacts.source_dirs is 'Directories in the source at backup time.';
comment on column bastion.run_artifacts.source_bytes is 'Bytes of file content in the source.';
comment on column bastion.run_artifacts.transfer_bytes is 'Bytes written to the target (parts, index, manifest, markers, raw-tree data).';
comment on column bastion.run_artifacts.pinned_at is 'Set while pinned: retention and job cascades never delete it; a manual delete needs force.';
comment on column bastion.run_artifacts.pinned_by is 'User who pinned it.';
comment on column bastion.run_artifacts.pin_reason is 'Why it is pinned (≤ 200 characters).';
comment on column bastion.run_artifacts.pin_expires_at is 'The pin no longer protects the snapshot after this time; NULL pins forever.';
comment on column bastion.run_artifacts.deleted_at is 'When the delete finished (status deleted).';
comment on column bastion.run_artifacts.deleted_by is 'User who requested the delete (NULL for retention and system deletes).';
comment on column bastion.run_artifacts.delete_reason is 'Why it was deleted: the user''s reason, retention or job_archive_cascade.';
comment on column bastion.run_artifacts.last_error_kind is 'Error kind of the last failed delete attempt.';
comment on column bastion.run_artifacts.last_error is 'Error text of the last failed delete attempt (single line, no credentials).';
comment on column bastion.run_artifacts.last_attempt_at is 'Time of the last delete attempt.';
comment on column bastion.run_artifacts.created_at is 'When the index row was created.';
comment on column bastion.run_artifacts.updated_at is 'Last change of this row.';

-- ---------------------------------------------------------------------------
-- Run-history pruning (seed 002 §10)

create function bastion.prune_run_history(batch_size integer default 1000) returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_days integer;
  v_deleted integer;
begin
  if batch_size is null or batch_size < 1 or batch_size > 100000 then
    perform bastion_private.raise_error('invalid_input', 400, 'batch_size must be between 1 and 100000', jsonb_build_object('field', 'batch_size'));
  end if;
  select run_retention_days into v_days from bastion.settings;
  -- Runs whose snapshot is still live (present, deleting, error) are kept so
  -- their data stays manageable; the FK cascades remove events, index rows of
  -- deleted/missing snapshots and their task rows with the run.
  with doomed as (
    select r.id
    from bastion.runs r
    where r.ended_at < now() - make_interval(days => v_days)
      and not exists (
        select 1 from bastion.run_artifacts a
        where a.run_id = r.id and a.status in ('present', 'deleting', 'error')
      )
    order by r.ended_at
    limit batch_size
    for update of r skip locked
  )
  delete from bastion.runs r using doomed where r.id = doomed.id;
  get diagnostics v_deleted = row_count;
  return v_deleted;
end
$$;
comment on function bastion.prune_run_history(integer) is 'Delete up to batch_size ended runs older than settings.run_retention_days whose snapshot is not present, deleting or error; returns how many were deleted. The hourly task calls it until it returns less than the batch.';
grant execute on function bastion.prune_run_history(integer) to bastion_admin;

-- ---------------------------------------------------------------------------
-- Row-level security: every role reads jobs, runs and snapshots; users see
-- themselves, admins see everyone. Writes go through functions only.

alter table bastion.users enable row level security;
alter table bastion.settings enable row level security;
alter table bastion.jobs enable row level security;
alter table bastion.runs enable row level security;
alter table bastion.run_events enable row level security;
alter table bastion.run_artifacts enable row level security;

grant select on bastion.users, bastion.settings, bastion.jobs, bastion.runs, bastion.run_events, bastion.run_artifacts to bastion_viewer;

create policy users_select on bastion.users for select to bastion_viewer
  using (id = bastion_private.current_user_id() or pg_has_role(current_user, 'bastion_admin', 'member'));
create policy settings_select on bastion.settings for select to bastion_viewer using (true);
create policy jobs_select on bastion.jobs for select to bastion_viewer using (true);
create policy runs_select on bastion.runs for select to bastion_viewer using (true);
create policy run_events_select on bastion.run_events for select to bastion_viewer using (true);
create policy run_artifacts_select on bastion.run_artifacts for select to bastion_viewer using (true);
