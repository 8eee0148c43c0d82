-- 0004_snapshots_and_delete_queue: the life of a snapshot after its index row
-- (0001): pins, leases held by restore/verify/relay, the durable delete queue,
-- and job archive / unarchive / delete.
--
-- The task queue machinery is generic (DESIGN §5). A queue is one row of
-- bastion_private.task_queues naming its task table, its event table, its
-- graphile-worker task identifier and a sync function for its side effects.
-- Every transition is written once, in bastion_private.task_* functions that
-- take the queue name and work on the registered tables with dynamic SQL;
-- the artifact delete queue here and the incomplete cleanup queue (issue 6)
-- are two registrations of the same code. A task table has these columns
-- (types as in bastion.artifact_delete_tasks) plus its own:
--
--   run_id (pk), job_id, node_id, executor_node_id (node that executes the
--   attempts), target_type, target_snapshot, status, attempts, created_at,
--   updated_at, cycle_started_at, next_attempt_at, last_attempt_at,
--   heartbeat_at, claimed_by, last_error_kind, last_error, outcome,
--   ignored_at, ignored_by, ignore_reason, event_seq
--
-- and its event table: run_id, seq, ts, level, kind, message, fields, with
-- primary key (run_id, seq) and seq gapless per task (bumped under the task's
-- row lock, like runs.event_seq).
--
-- State and schedule never disagree: every transition ends with
-- bastion_private.task_changed, which, in the same transaction, makes
-- graphile-worker hold exactly one job per waiting task (job key
-- '<identifier>:<run_id>', run_at = next_attempt_at, queue
-- '<identifier>:<executor_node_id>:<lane>') and none for the others, then
-- calls the queue's sync function. Attempts start with a claim (one UPDATE …
-- RETURNING; a stale or duplicate job finds nothing and ends quietly), send
-- heartbeats, and end with an outcome that applies the seeds' rules; a
-- watchdog returns attempts of dead workers to retrying.

-- ---------------------------------------------------------------------------
-- Types

create type bastion.task_status as enum ('queued', 'running', 'retrying', 'blocked', 'done', 'ignored', 'abandoned');
comment on type bastion.task_status is 'Queue task lifecycle (delete and cleanup queues): queued (due now) → running (an attempt holds it) → done | retrying (failed, waits for next_attempt_at) | blocked (auth/config failure, slow retries, needs an operator) | abandoned (20 attempts or 30 days; only an operator restarts it); ignored: an operator stopped it.';
create type bastion.task_error_kind as enum ('network', 'http', 'io', 'auth', 'config', 'unknown', 'offline');
comment on type bastion.task_error_kind is 'Class of a failed attempt; picks the backoff row (DESIGN §5) and whether the task is blocked (auth, config) or retrying. offline: the node holding the data is not connected.';
create type bastion.lease_holder_kind as enum ('restore', 'verify', 'relay');
comment on type bastion.lease_holder_kind is 'What holds a snapshot lease: a restore, a verify, or a hub relay of its bytes.';
create type bastion.job_delete_mode as enum ('delete_data_first', 'keep_data');
comment on type bastion.job_delete_mode is 'delete_data_first: delete every snapshot of the job through the delete queue, then the job; keep_data: delete the job and its index now and leave the data on the targets.';

-- ---------------------------------------------------------------------------
-- Jobs: a job being deleted with its data

alter table bastion.jobs
  add column delete_requested_at timestamptz,
  add column delete_requested_by uuid references bastion.users (id) on delete set null,
  add constraint jobs_deleting_is_archived check (delete_requested_at is null or archived_at is not null),
  add constraint jobs_delete_requested_by_needs_at check (delete_requested_by is null or delete_requested_at is not null);
comment on column bastion.jobs.delete_requested_at is 'Set by delete_job(delete_data_first): the job is archived and its snapshots are being deleted; the row goes once none is present, deleting or error.';
comment on column bastion.jobs.delete_requested_by is 'User who asked to delete the job with its data.';

-- ---------------------------------------------------------------------------
-- Helpers

create function bastion_private.task_clean_error(p_text text, p_max_bytes integer default 500) returns text
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v text;
  b bytea;
  n integer;
begin
  if p_text is null then
    return null;
  end if;
  -- Defence in depth: callers (core/redact.ts) already redact URLs and cut the
  -- text; userinfo is removed again here so no credential is ever stored.
  v := regexp_replace(p_text, '([A-Za-z][A-Za-z0-9+.-]*://)[^/@[:space:]]*@', '\1', 'g');
  v := regexp_replace(v, '[\u0001-\u001f\u007f\u2028\u2029]+', ' ', 'g');
  v := btrim(regexp_replace(v, ' {2,}', ' ', 'g'));
  if octet_length(v) <= p_max_bytes then
    return v;
  end if;
  -- Cut on a UTF-8 character boundary, leaving room for the 3-byte ellipsis.
  b := convert_to(v, 'UTF8');
  n := p_max_bytes - 3;
  while n > 0 and (get_byte(b, n) & 192) = 128 loop
    n := n - 1;
  end loop;
  return convert_from(substring(b from 1 for n), 'UTF8') || '…';
end
$$;
comment on function bastion_private.task_clean_error(text, integer) is 'One line, no URL userinfo, at most p_max_bytes UTF-8 bytes cut on a character boundary (ellipsis included): the stored form of task errors.';

create function bastion_private.task_clean_reason(p_text text, p_max_chars integer default 200) returns text
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v text;
begin
  v := btrim(regexp_replace(coalesce(p_text, ''), '[\u0001-\u001f\u007f\u2028\u2029[:space:]]+', ' ', 'g'));
  if v = '' then
    return null;
  end if;
  if char_length(v) > p_max_chars then
    v := left(v, p_max_chars - 1) || '…';
  end if;
  return v;
end
$$;
comment on function bastion_private.task_clean_reason(text, integer) is 'A free-text reason as stored: one line, trimmed, NULL when empty, cut to p_max_chars characters (ellipsis included) on a character boundary.';

create function bastion_private.task_backoff_seconds(p_kind bastion.task_error_kind, p_attempts integer, p_key text) returns integer
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  a integer := greatest(coalesce(p_attempts, 0), 1);
  v_base numeric;
  v_cap numeric;
  v_jitter numeric;
  h numeric := 0;
  b bytea := convert_to(coalesce(p_key, ''), 'UTF8');
  m constant numeric := 18446744073709551616; -- 2^64: the reference hashes with wrapping u64
begin
  -- DESIGN §5 backoff table; core/backoff.ts holds the same table (a test
  -- compares both on many inputs).
  case p_kind
    when 'network', 'http' then v_base := 60; v_cap := 21600; v_jitter := 30;
    when 'io', 'unknown' then v_base := 300; v_cap := 21600; v_jitter := 60;
    when 'auth', 'config' then v_base := 21600; v_cap := 86400; v_jitter := 600;
    when 'offline' then v_base := 30; v_cap := 600; v_jitter := 10;
  end case;
  -- Deterministic jitter (reference §1.8): h = h·131 + byte over the key's
  -- UTF-8 bytes, then + attempts·97, all mod 2^64; jitter = h mod max_jitter.
  for i in 0 .. length(b) - 1 loop
    h := mod(h * 131 + get_byte(b, i), m);
  end loop;
  h := mod(h + a * 97, m);
  return (least(v_base * power(2::numeric, least(a - 1, 30)), v_cap) + mod(h, v_jitter))::integer;
end
$$;
comment on function bastion_private.task_backoff_seconds(bastion.task_error_kind, integer, text) is 'Seconds until the next attempt after a failure: min(base·2^(attempts−1), cap) + deterministic jitter from the key (the run id text) and attempts (DESIGN §5, reference §1.8; mirrored by core/backoff.ts).';

create function bastion_private.task_abandon_reason(p_attempts integer, p_cycle_started_at timestamptz) returns text
language sql stable
set search_path = pg_catalog, pg_temp
as $$
  -- Seeds: give up after 20 attempts or 30 days. The age counts from the start
  -- of the current cycle (creation, retry-now, unignore or a new request), so
  -- an operator's retry of an old task gets a full budget (closes reference
  -- §11.19, where such a task was abandoned again on its first failure).
  select case
    when p_attempts >= 20 then 'max_attempts'
    when now() - p_cycle_started_at >= interval '30 days' then 'max_age'
  end
$$;
comment on function bastion_private.task_abandon_reason(integer, timestamptz) is 'Why a failing task is abandoned instead of retried (max_attempts: 20 attempts; max_age: 30 days since its cycle started), or NULL.';

create function bastion_private.task_lane(p_run_id uuid, p_lanes integer) returns integer
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select get_byte(uuid_send(p_run_id), 15) % greatest(p_lanes, 1)
$$;
comment on function bastion_private.task_lane(uuid, integer) is 'Lane k of a task (last byte of the run id mod the lanes per node): attempts of one node run in at most that many graphile-worker queues at once.';

-- ---------------------------------------------------------------------------
-- The queue registry

create table bastion_private.task_queues (
  name text primary key constraint task_queues_name_format check (name ~ '^[a-z][a-z0-9_]{0,62}$'),
  task_table regclass not null unique,
  event_table regclass not null unique,
  task_identifier text not null unique constraint task_queues_task_identifier_format check (task_identifier ~ '^[a-z][a-z0-9-]{0,62}$'),
  sync_function regprocedure not null,
  not_found_code text not null,
  lanes_per_node integer not null default 4 constraint task_queues_lanes_range check (lanes_per_node between 1 and 64),
  job_max_attempts integer not null default 5 constraint task_queues_job_max_attempts_range check (job_max_attempts between 1 and 25)
);
comment on table bastion_private.task_queues is 'The durable task queues sharing the generic state machine (bastion_private.task_* functions).';
comment on column bastion_private.task_queues.name is 'Queue name the generic functions take (artifact_delete, incomplete_cleanup).';
comment on column bastion_private.task_queues.task_table is 'Table of the tasks (one row per run, the generic task columns).';
comment on column bastion_private.task_queues.event_table is 'Append-only event table of the tasks, keyed (run_id, seq).';
comment on column bastion_private.task_queues.task_identifier is 'graphile-worker task that executes attempts; also the prefix of job keys and queue names.';
comment on column bastion_private.task_queues.sync_function is 'Called with the run ids after every change, in the same transaction: the queue''s side effects (e.g. snapshot status).';
comment on column bastion_private.task_queues.not_found_code is 'Error code raised when an operator action names a task that does not exist.';
comment on column bastion_private.task_queues.lanes_per_node is 'Attempts of one executing node run in at most this many graphile-worker queues at once (per-node concurrency, DESIGN §5; default 4).';
comment on column bastion_private.task_queues.job_max_attempts is 'max_attempts of the graphile-worker jobs: how often graphile-worker itself retries a job whose task function failed before it could record an outcome (database errors).';

-- ---------------------------------------------------------------------------
-- The artifact delete queue

create table bastion.artifact_delete_tasks (
  run_id uuid primary key references bastion.run_artifacts (run_id) on delete cascade,
  job_id uuid not null references bastion.jobs (id) on delete cascade,
  node_id text not null constraint artifact_delete_tasks_node_id_format check (bastion_private.is_node_id(node_id)),
  target_type bastion.target_type not null,
  target_snapshot jsonb not null constraint artifact_delete_tasks_target_snapshot_object check (jsonb_typeof(target_snapshot) = 'object'),
  -- local_dir data is deleted on the node that holds it; WebDAV data by the hub, which holds the node-scoped secrets (DESIGN §6).
  executor_node_id text generated always as (case when target_type = 'webdav' then 'hub' else node_id end) stored,
  status bastion.task_status not null default 'queued',
  attempts integer not null default 0 constraint artifact_delete_tasks_attempts_nonnegative check (attempts >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  cycle_started_at timestamptz not null default now(),
  next_attempt_at timestamptz,
  last_attempt_at timestamptz,
  heartbeat_at timestamptz,
  claimed_by text constraint artifact_delete_tasks_claimed_by_length check (char_length(claimed_by) <= 128),
  last_error_kind bastion.task_error_kind,
  last_error text constraint artifact_delete_tasks_last_error_length check (octet_length(last_error) <= 500),
  outcome text constraint artifact_delete_tasks_outcome_values check (outcome in ('deleted', 'not_found')),
  ignored_at timestamptz,
  ignored_by uuid references bastion.users (id) on delete set null,
  ignore_reason text constraint artifact_delete_tasks_ignore_reason_length check (char_length(ignore_reason) <= 200),
  requested_by uuid references bastion.users (id) on delete set null,
  delete_reason text constraint artifact_delete_tasks_delete_reason_length check (char_length(delete_reason) <= 200),
  force boolean not null default false,
  event_seq integer not null default 0 constraint artifact_delete_tasks_event_seq_nonnegative check (event_seq >= 0),
  constraint artifact_delete_tasks_scheduled_iff_waiting check ((status in ('queued', 'retrying', 'blocked')) = (next_attempt_at is not null)),
  constraint artifact_delete_tasks_running_has_heartbeat check ((status = 'running') = (heartbeat_at is not null and claimed_by is not null)),
  constraint artifact_delete_tasks_running_was_attempted check (status <> 'running' or last_attempt_at is not null),
  constraint artifact_delete_tasks_attempted_unless_queued_or_ignored check (status in ('queued', 'ignored') or attempts >= 1),
  constraint artifact_delete_tasks_queued_is_fresh check (status <> 'queued' or (attempts = 0 and last_error_kind is null and last_error is null)),
  constraint artifact_delete_tasks_done_has_outcome check ((status = 'done') = (outcome is not null)),
  constraint artifact_delete_tasks_done_has_no_error check (status <> 'done' or (last_error_kind is null and last_error is null)),
  constraint artifact_delete_tasks_failed_has_error check (status not in ('retrying', 'blocked', 'abandoned') or last_error_kind is not null),
  constraint artifact_delete_tasks_blocked_kind check (status <> 'blocked' or last_error_kind in ('auth', 'config')),
  constraint artifact_delete_tasks_ignored_has_ignored_at check ((status = 'ignored') = (ignored_at is not null)),
  constraint artifact_delete_tasks_ignore_fields_need_ignored check (ignored_at is not null or (ignored_by is null and ignore_reason is null)),
  constraint artifact_delete_tasks_node_matches_snapshot check (target_snapshot ->> 'node_id' = node_id),
  constraint artifact_delete_tasks_target_type_matches_snapshot check (target_snapshot -> 'target' ->> 'type' = target_type::text)
);
create index artifact_delete_tasks_due_idx on bastion.artifact_delete_tasks (executor_node_id, target_type, next_attempt_at) where status in ('queued', 'retrying', 'blocked');
create index artifact_delete_tasks_running_idx on bastion.artifact_delete_tasks (heartbeat_at) where status = 'running';
create index artifact_delete_tasks_status_idx on bastion.artifact_delete_tasks (status, next_attempt_at);
create index artifact_delete_tasks_job_idx on bastion.artifact_delete_tasks (job_id);
comment on table bastion.artifact_delete_tasks is 'The delete queue (seed 002 §5.2): one task per snapshot being deleted, the truth an operator reads. graphile-worker only delivers attempts at next_attempt_at.';
comment on column bastion.artifact_delete_tasks.run_id is 'The snapshot (its run id).';
comment on column bastion.artifact_delete_tasks.job_id is 'The job.';
comment on column bastion.artifact_delete_tasks.node_id is 'Node that holds (local_dir) or wrote (webdav) the data.';
comment on column bastion.artifact_delete_tasks.target_type is 'local_dir or webdav.';
comment on column bastion.artifact_delete_tasks.target_snapshot is 'Where the data is (copied from run_artifacts; no credentials).';
comment on column bastion.artifact_delete_tasks.executor_node_id is 'Node that executes the attempts: node_id for local_dir, the hub for webdav.';
comment on column bastion.artifact_delete_tasks.status is 'queued, running, retrying, blocked, done, ignored or abandoned (see type task_status).';
comment on column bastion.artifact_delete_tasks.attempts is 'Attempts in the current cycle (counted when an attempt starts); reset by retry-now, unignore and a new request.';
comment on column bastion.artifact_delete_tasks.created_at is 'When the task was first created.';
comment on column bastion.artifact_delete_tasks.updated_at is 'Last state change (heartbeats excluded).';
comment on column bastion.artifact_delete_tasks.cycle_started_at is 'Start of the current retry cycle (creation, retry-now, unignore, new request); the 30-day abandon age counts from here.';
comment on column bastion.artifact_delete_tasks.next_attempt_at is 'When the next attempt is due; set exactly while queued, retrying or blocked.';
comment on column bastion.artifact_delete_tasks.last_attempt_at is 'Start of the last attempt.';
comment on column bastion.artifact_delete_tasks.heartbeat_at is 'Last heartbeat of the running attempt; older than the watchdog''s threshold (40 s) means its worker died.';
comment on column bastion.artifact_delete_tasks.claimed_by is 'graphile-worker pool id of the worker process running the attempt.';
comment on column bastion.artifact_delete_tasks.last_error_kind is 'Kind of the last failure (see type task_error_kind).';
comment on column bastion.artifact_delete_tasks.last_error is 'Last failure: one line, no credentials, at most 500 bytes.';
comment on column bastion.artifact_delete_tasks.outcome is 'How a done task ended: deleted (data removed) or not_found (already gone; the snapshot becomes missing).';
comment on column bastion.artifact_delete_tasks.ignored_at is 'Set while ignored.';
comment on column bastion.artifact_delete_tasks.ignored_by is 'User who ignored the task.';
comment on column bastion.artifact_delete_tasks.ignore_reason is 'Why it was ignored (≤ 200 characters).';
comment on column bastion.artifact_delete_tasks.requested_by is 'User who requested the delete (NULL for retention and system requests).';
comment on column bastion.artifact_delete_tasks.delete_reason is 'Reason of the request: the user''s text, retention, job_archive_cascade or job_delete.';
comment on column bastion.artifact_delete_tasks.force is 'The request overrode a pin or a lease.';
comment on column bastion.artifact_delete_tasks.event_seq is 'Highest artifact_delete_events.seq of the task; bumped under the row lock, so event numbers have no gaps.';

create table bastion.artifact_delete_events (
  run_id uuid not null references bastion.artifact_delete_tasks (run_id) on delete cascade,
  seq integer not null constraint artifact_delete_events_seq_positive check (seq > 0),
  ts timestamptz not null default now(),
  level bastion.event_level not null,
  kind text not null constraint artifact_delete_events_kind_format check (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
  message text not null constraint artifact_delete_events_message_length check (char_length(message) <= 1000),
  fields jsonb constraint artifact_delete_events_fields_object check (jsonb_typeof(fields) = 'object'),
  primary key (run_id, seq)
);
create index artifact_delete_events_ts_idx on bastion.artifact_delete_events (ts);
comment on table bastion.artifact_delete_events is 'Append-only log of each delete task: queued, requeued, attempt, deleted, not_found, failed, blocked, abandoned, released, retry_now, ignored, unignored.';
comment on column bastion.artifact_delete_events.run_id is 'The task (snapshot run id).';
comment on column bastion.artifact_delete_events.seq is '1, 2, 3, … per task, without gaps.';
comment on column bastion.artifact_delete_events.ts is 'Event time.';
comment on column bastion.artifact_delete_events.level is 'info, warn or error.';
comment on column bastion.artifact_delete_events.kind is 'Machine-readable event kind.';
comment on column bastion.artifact_delete_events.message is 'Human-readable, credential-free message.';
comment on column bastion.artifact_delete_events.fields is 'Details: attempt, error_kind, next_attempt_at, duration_ms, http_status, retry_after_secs, user_id, reason, …';

-- ---------------------------------------------------------------------------
-- Snapshot leases

create table bastion.snapshot_leases (
  id uuid primary key default gen_random_uuid(),
  run_id uuid not null references bastion.run_artifacts (run_id) on delete cascade,
  holder_kind bastion.lease_holder_kind not null,
  operation_id uuid not null,
  acquired_at timestamptz not null default now(),
  expires_at timestamptz not null,
  acquired_by uuid references bastion.users (id) on delete set null,
  constraint snapshot_leases_expiry_after_acquisition check (expires_at > acquired_at),
  constraint snapshot_leases_holder_key unique (run_id, holder_kind, operation_id)
);
create index snapshot_leases_run_expiry_idx on bastion.snapshot_leases (run_id, expires_at);
comment on table bastion.snapshot_leases is 'Snapshots in use by a restore, verify or relay: a delete of a snapshot with an unexpired lease is refused (snapshot_in_use) unless forced, and retention keeps it. Holders renew before expires_at.';
comment on column bastion.snapshot_leases.id is 'Lease id.';
comment on column bastion.snapshot_leases.run_id is 'The snapshot.';
comment on column bastion.snapshot_leases.holder_kind is 'restore, verify or relay.';
comment on column bastion.snapshot_leases.operation_id is 'The operation holding the lease.';
comment on column bastion.snapshot_leases.acquired_at is 'When the lease was first taken.';
comment on column bastion.snapshot_leases.expires_at is 'The lease protects the snapshot until this time; renewals move it.';
comment on column bastion.snapshot_leases.acquired_by is 'User on whose behalf the lease was taken.';

-- ---------------------------------------------------------------------------
-- Generic queue functions

create function bastion_private.task_queue(p_queue text) returns bastion_private.task_queues
language plpgsql stable
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues;
begin
  select * into q from bastion_private.task_queues where name = p_queue;
  if not found then
    perform bastion_private.raise_error('invalid_input', 400, 'unknown task queue', jsonb_build_object('field', 'queue', 'reason', 'unknown_queue'));
  end if;
  return q;
end
$$;
comment on function bastion_private.task_queue(text) is 'The registry row of a queue, or invalid_input.';

create function bastion_private.task_schedule(p_queue text, p_run_ids uuid[]) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v_specs graphile_worker.job_spec[];
  v_remove text[];
  v_key text;
begin
  -- One job per waiting task (replace: a newer schedule wins; a job already
  -- running keeps running, loses its key, and a fresh one is added), no job
  -- for the others. Jobs of a node go to <identifier>:<node>:<lane>, so at
  -- most lanes_per_node attempts of one node run at once.
  execute format($f$
    select
      coalesce(array_agg(row(%1$L, json_build_object('run_id', t.run_id, 'target_type', t.target_type),
                             %1$L || ':' || t.executor_node_id || ':' || bastion_private.task_lane(t.run_id, %3$s),
                             t.next_attempt_at, %4$s, %1$L || ':' || t.run_id, 0, null)::graphile_worker.job_spec
                         order by t.run_id) filter (where t.status in ('queued', 'retrying', 'blocked')), '{}'),
      coalesce(array_agg(%1$L || ':' || t.run_id order by t.run_id) filter (where t.status not in ('queued', 'retrying', 'blocked')), '{}')
    from %2$s t
    where t.run_id = any($1)$f$, q.task_identifier, q.task_table, q.lanes_per_node, q.job_max_attempts)
  into v_specs, v_remove
  using p_run_ids;
  if cardinality(v_specs) > 0 then
    perform graphile_worker.add_jobs(v_specs, false);
  end if;
  -- Only keys that still have a job (one index probe for the whole batch;
  -- after a claim, the tasks it finishes have none): removing 256 absent keys
  -- one by one cost ~7 ms per batch.
  if cardinality(v_remove) > 0 then
    for v_key in select j.key from graphile_worker.jobs j where j.key = any(v_remove) loop
      perform graphile_worker.remove_job(v_key);
    end loop;
  end if;
end
$$;
comment on function bastion_private.task_schedule(text, uuid[]) is 'Make graphile-worker agree with the task rows: one job per queued/retrying/blocked task at next_attempt_at, none for the others.';

create function bastion_private.task_changed(p_queue text, p_run_ids uuid[]) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
begin
  if p_run_ids is null or cardinality(p_run_ids) = 0 then
    return;
  end if;
  perform bastion_private.task_schedule(p_queue, p_run_ids);
  execute format('select %s($1)', q.sync_function::oid::regproc) using p_run_ids;
end
$$;
comment on function bastion_private.task_changed(text, uuid[]) is 'End of every transition: schedule (task_schedule), then the queue''s sync function, in the caller''s transaction.';

create function bastion_private.task_append_event(p_queue text, p_run_id uuid, p_level bastion.event_level, p_kind text, p_message text, p_fields jsonb default null) returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v_seq integer;
begin
  -- The task row lock serialises concurrent writers; a rolled-back writer
  -- rolls back its bump too, so seq stays gapless.
  execute format('update %s set event_seq = event_seq + 1 where run_id = $1 returning event_seq', q.task_table) into v_seq using p_run_id;
  if v_seq is null then
    perform bastion_private.raise_error(q.not_found_code, 404, 'task not found', jsonb_build_object('run_id', p_run_id));
  end if;
  execute format('insert into %s (run_id, seq, level, kind, message, fields) values ($1, $2, $3, $4, $5, $6)', q.event_table)
    using p_run_id, v_seq, p_level, p_kind, left(coalesce(p_message, p_kind), 1000), nullif(p_fields, 'null'::jsonb);
  return v_seq;
end
$$;
comment on function bastion_private.task_append_event(text, uuid, bastion.event_level, text, text, jsonb) is 'Append one event to a task with the next gapless seq; returns the seq.';


create function bastion_private.task_claim(p_queue text, p_run_id uuid, p_worker text, p_limit integer default 1) returns setof jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v_rows jsonb[];
begin
  if p_worker is null or p_worker = '' or char_length(p_worker) > 128 then
    perform bastion_private.raise_error('invalid_input', 400, 'worker id must be 1 to 128 characters', jsonb_build_object('field', 'worker'));
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    perform bastion_private.raise_error('invalid_input', 400, 'limit must be between 1 and 1000', jsonb_build_object('field', 'limit'));
  end if;
  -- The task the job was scheduled for, plus up to limit−1 other due tasks of
  -- the same executing node and target type (batching: one graphile job, one
  -- claim and one outcome statement for many tasks; their own jobs are
  -- dropped below). FOR UPDATE SKIP LOCKED plus the status condition make the
  -- claim exclusive: a racing claimer skips the rows, or no longer sees them
  -- as due once the winner committed.
  execute format($f$
    with trig as (
      select t.executor_node_id, t.target_type from %1$s t where t.run_id = $1
    ),
    own as (
      select t.run_id from %1$s t
       where t.run_id = $1 and t.status in ('queued', 'retrying', 'blocked') and t.next_attempt_at <= now()
       for update skip locked
    ),
    others as (
      select t.run_id from %1$s t, trig g
       where t.executor_node_id = g.executor_node_id and t.target_type = g.target_type
         and t.status in ('queued', 'retrying', 'blocked') and t.next_attempt_at <= now() and t.run_id <> $1
       order by t.next_attempt_at, t.run_id
       limit $3 - 1
       for update of t skip locked
    ),
    picked as (
      select run_id from own union all select run_id from others
    ),
    claimed as (
      update %1$s t
         set status = 'running', attempts = t.attempts + 1, last_attempt_at = now(), heartbeat_at = now(),
             claimed_by = $2, next_attempt_at = null, updated_at = now(), event_seq = t.event_seq + 1
        from picked p
       where t.run_id = p.run_id
      returning t.*
    ),
    ev as (
      insert into %2$s (run_id, seq, level, kind, message, fields)
      select c.run_id, c.event_seq, 'info', 'attempt', 'attempt ' || c.attempts, jsonb_build_object('attempt', c.attempts, 'worker', $2)
        from claimed c
    )
    select coalesce(array_agg(to_jsonb(c) order by c.run_id), '{}') from claimed c$f$, q.task_table, q.event_table)
  into v_rows
  using p_run_id, p_worker, p_limit;
  perform bastion_private.task_changed(p_queue, array(select (r ->> 'run_id')::uuid from unnest(v_rows) r));
  return query select r from unnest(v_rows) r;
end
$$;
comment on function bastion_private.task_claim(text, uuid, text, integer) is 'Start attempts: atomically move task p_run_id (when due) and up to p_limit−1 other due tasks of its node and target type to running, count the attempt and write an attempt event. Returns the claimed task rows as JSON; nothing when the job was stale or a racing worker won.';

create function bastion_private.task_heartbeat(p_queue text, p_worker text, p_run_ids uuid[]) returns uuid[]
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v uuid[];
begin
  -- Rows are locked in run id order, like every multi-row transition, so a
  -- heartbeat and a bulk request on the same tasks never deadlock.
  execute format($f$
    with l as (
      select t.run_id from %1$s t
       where t.run_id = any($1) and t.status = 'running' and t.claimed_by = $2
       order by t.run_id
       for update
    ),
    u as (
      update %1$s t set heartbeat_at = now() from l where t.run_id = l.run_id
      returning t.run_id
    )
    select coalesce(array_agg(run_id), '{}') from u$f$, q.task_table)
  into v
  using p_run_ids, p_worker;
  return v;
end
$$;
comment on function bastion_private.task_heartbeat(text, text, uuid[]) is 'Record that the attempts of p_run_ids are alive; returns the run ids this worker still holds (a task missing from the answer was taken away, e.g. recovered by the watchdog, and its attempt should stop).';

create function bastion_private.task_finish(p_queue text, p_worker text, p_results jsonb) returns table (run_id uuid, status bastion.task_status)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v_ids uuid[];
  v_statuses bastion.task_status[];
begin
  if p_results is null or jsonb_typeof(p_results) <> 'array' then
    perform bastion_private.raise_error('invalid_input', 400, 'results must be a JSON array', jsonb_build_object('field', 'results'));
  end if;
  -- Each result: {run_id, attempt, outcome?, message?, kind?, error?, fields?, retry_after_secs?}.
  -- With an outcome the task is done; without, the attempt failed with kind:
  -- abandoned after 20 attempts or 30 days, blocked for auth/config, else
  -- retrying; the wait is the backoff, or the server's Retry-After when longer
  -- (capped at 24 h). Results of attempts this worker no longer holds (the
  -- watchdog recovered them, an operator acted) are ignored.
  execute format($f$
    with r as (
      select * from jsonb_to_recordset($2) as r(run_id uuid, attempt integer, outcome text, message text, kind bastion.task_error_kind,
                                               error text, fields jsonb, retry_after_secs integer)
    ),
    cur as (
      select t.run_id, t.attempts, t.cycle_started_at, r.outcome, r.message, coalesce(r.kind, 'unknown') as kind, r.error,
             case when jsonb_typeof(r.fields) = 'object' then r.fields else '{}'::jsonb end as fields, r.retry_after_secs
        from %1$s t join r on r.run_id = t.run_id
       where t.status = 'running' and t.claimed_by = $1 and t.attempts = r.attempt
       order by t.run_id
       for update of t
    ),
    a as (
      select c.*, case when c.outcome is null then bastion_private.task_abandon_reason(c.attempts, c.cycle_started_at) end as abandon_reason
        from cur c
    ),
    d as (
      select a.*,
             case when a.outcome is not null then 'done'
                  when a.abandon_reason is not null then 'abandoned'
                  when a.kind in ('auth', 'config') then 'blocked'
                  else 'retrying' end::bastion.task_status as new_status,
             -- Backoff and error text only for failures (the common, successful case skips both).
             case when a.outcome is null and a.abandon_reason is null then
               now() + make_interval(secs => greatest(bastion_private.task_backoff_seconds(a.kind, a.attempts, a.run_id::text),
                                                      least(greatest(coalesce(a.retry_after_secs, 0), 0), 86400))) end as retry_at,
             case when a.outcome is null then bastion_private.task_clean_error(coalesce(nullif(a.error, ''), 'attempt failed')) end as clean_error
        from a
    ),
    upd as (
      update %1$s t
         set status = d.new_status,
             next_attempt_at = case when d.new_status in ('retrying', 'blocked') then d.retry_at end,
             heartbeat_at = null,
             claimed_by = null,
             outcome = case when d.new_status = 'done' then d.outcome end,
             last_error_kind = case when d.new_status = 'done' then null else d.kind end,
             last_error = case when d.new_status = 'done' then null else d.clean_error end,
             updated_at = now(),
             event_seq = t.event_seq + 1
        from d
       where t.run_id = d.run_id
      returning t.run_id, t.status, t.event_seq, t.next_attempt_at
    ),
    ev as (
      insert into %2$s (run_id, seq, level, kind, message, fields)
      select u.run_id, u.event_seq,
             case u.status when 'done' then 'info' when 'abandoned' then 'error' else 'warn' end::bastion.event_level,
             case u.status when 'done' then d.outcome when 'retrying' then 'failed' else u.status::text end,
             left(case when u.status = 'done' then coalesce(nullif(d.message, ''), d.outcome) else d.clean_error end, 1000),
             d.fields || jsonb_strip_nulls(jsonb_build_object(
               'attempt', d.attempts,
               'error_kind', case when u.status <> 'done' then d.kind end,
               'next_attempt_at', u.next_attempt_at,
               'retry_after_secs', case when u.status <> 'done' then d.retry_after_secs end,
               'abandon_reason', case when u.status = 'abandoned' then d.abandon_reason end))
        from upd u join d on d.run_id = u.run_id
    )
    select coalesce(array_agg(u.run_id order by u.run_id), '{}'), coalesce(array_agg(u.status order by u.run_id), '{}') from upd u$f$,
    q.task_table, q.event_table)
  into v_ids, v_statuses
  using p_worker, p_results;
  perform bastion_private.task_changed(p_queue, v_ids);
  return query select * from unnest(v_ids, v_statuses);
end
$$;
comment on function bastion_private.task_finish(text, text, jsonb) is 'Record the outcomes of attempts (a JSON array of {run_id, attempt, outcome | kind + error, message, fields, retry_after_secs}) by the seeds'' rules: done, or abandoned / blocked / retrying with backoff, each with an event. Returns the tasks changed.';

create function bastion_private.task_release(p_queue text, p_worker text, p_run_ids uuid[]) returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v_ids uuid[];
begin
  -- Claimed but never started (the worker is stopping): undo the claim, due
  -- now, in the state the task had before (queued with a fresh budget,
  -- blocked for auth/config errors, else retrying).
  execute format($f$
    with s as (
      select t.run_id,
             case when t.last_error_kind is null then 'queued'
                  when t.last_error_kind in ('auth', 'config') then 'blocked'
                  else 'retrying' end::bastion.task_status as new_status
        from %1$s t
       where t.run_id = any($1) and t.status = 'running' and t.claimed_by = $2
       order by t.run_id
       for update
    ),
    u as (
      update %1$s t
         set status = s.new_status,
             attempts = case when s.new_status = 'queued' then 0 else greatest(t.attempts - 1, 1) end,
             next_attempt_at = now(), heartbeat_at = null, claimed_by = null, updated_at = now(), event_seq = t.event_seq + 1
        from s where t.run_id = s.run_id
      returning t.run_id, t.event_seq
    ),
    ev as (
      insert into %2$s (run_id, seq, level, kind, message, fields)
      select u.run_id, u.event_seq, 'info', 'released', 'attempt not started: the worker is stopping', jsonb_build_object('worker', $2) from u
    )
    select coalesce(array_agg(run_id), '{}') from u$f$, q.task_table, q.event_table)
  into v_ids
  using p_run_ids, p_worker;
  perform bastion_private.task_changed(p_queue, v_ids);
  return cardinality(v_ids);
end
$$;
comment on function bastion_private.task_release(text, text, uuid[]) is 'Give back claimed tasks whose attempt never started (graceful shutdown): due at once, attempt not counted.';

create function bastion_private.task_watchdog(p_stale_after interval default '40 seconds', p_retry_delay interval default '30 seconds')
returns table (queue text, run_id uuid, status bastion.task_status)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues;
  v_ids uuid[];
  v_statuses bastion.task_status[];
  v_workers text[];
  v_all_q text[] := '{}';
  v_all_ids uuid[] := '{}';
  v_all_statuses bastion.task_status[] := '{}';
  v_suspects text[] := '{}';
  v_alive text[] := '{}';
  v_dead text[];
  v_name text;
begin
  if p_stale_after is null or p_stale_after < interval '1 second' then
    perform bastion_private.raise_error('invalid_input', 400, 'stale_after must be at least one second', jsonb_build_object('field', 'stale_after'));
  end if;
  -- 1. Attempts whose heartbeat stopped: their worker died (SIGKILL, crash,
  --    lost host). Back to retrying after p_retry_delay, or abandoned by the
  --    usual rules, with a failed event (reference: "stuck running; recovered").
  for q in select * from bastion_private.task_queues order by name loop
    execute format($f$
      with stale as (
        select t.run_id, t.claimed_by, t.heartbeat_at, t.attempts, t.cycle_started_at,
               bastion_private.task_abandon_reason(t.attempts, t.cycle_started_at) as abandon_reason
          from %1$s t
         where t.status = 'running' and t.heartbeat_at < now() - $1
         order by t.heartbeat_at
         limit 1000
         for update skip locked
      ),
      u as (
        update %1$s t
           set status = case when s.abandon_reason is not null then 'abandoned' else 'retrying' end::bastion.task_status,
               next_attempt_at = case when s.abandon_reason is null then now() + $2 end,
               heartbeat_at = null, claimed_by = null, last_error_kind = 'unknown', last_error = 'stuck running; recovered',
               updated_at = now(), event_seq = t.event_seq + 1
          from stale s
         where t.run_id = s.run_id
        returning t.run_id, t.status, t.event_seq, t.next_attempt_at, s.claimed_by as old_worker, s.heartbeat_at as old_heartbeat,
                  s.attempts, s.abandon_reason
      ),
      ev as (
        insert into %2$s (run_id, seq, level, kind, message, fields)
        select u.run_id, u.event_seq,
               case u.status when 'abandoned' then 'error' else 'warn' end::bastion.event_level,
               case u.status when 'abandoned' then 'abandoned' else 'failed' end,
               'stuck running; recovered',
               jsonb_strip_nulls(jsonb_build_object('error_kind', 'unknown', 'attempt', u.attempts, 'worker', u.old_worker,
                                                    'last_heartbeat_at', u.old_heartbeat, 'next_attempt_at', u.next_attempt_at,
                                                    'abandon_reason', u.abandon_reason))
          from u
      )
      select coalesce(array_agg(u.run_id order by u.run_id), '{}'), coalesce(array_agg(u.status order by u.run_id), '{}'),
             coalesce(array_agg(distinct u.old_worker), '{}')
        from u$f$, q.task_table, q.event_table)
    into v_ids, v_statuses, v_workers
    using p_stale_after, coalesce(p_retry_delay, interval '0');
    v_all_q := v_all_q || array_fill(q.name, array[cardinality(v_ids)]);
    v_all_ids := v_all_ids || v_ids;
    v_all_statuses := v_all_statuses || v_statuses;
    v_suspects := v_suspects || v_workers;
  end loop;

  -- 2. A worker process whose every attempt went stale is dead. Its
  --    graphile-worker jobs and named-queue locks would otherwise stay locked
  --    for 4 hours (graphile-worker's own expiry), blocking that node's lane,
  --    so release them the way graphile-worker documents for dead workers.
  if cardinality(v_suspects) > 0 then
    for q in select * from bastion_private.task_queues order by name loop
      execute format($f$
        select coalesce(array_agg(distinct claimed_by), '{}') from %s
         where status = 'running' and claimed_by = any($1) and heartbeat_at >= now() - $2$f$, q.task_table)
      into v_workers
      using v_suspects, p_stale_after;
      v_alive := v_alive || v_workers;
    end loop;
    select array_agg(distinct w) into v_dead from unnest(v_suspects) w where w <> all (v_alive);
    if v_dead is not null then
      perform graphile_worker.force_unlock_workers(v_dead);
    end if;
  end if;

  -- 3. Schedule the recovered tasks (a fresh job per task) and sync them.
  for v_name in select distinct x from unnest(v_all_q) x loop
    perform bastion_private.task_changed(v_name, array(select i from unnest(v_all_q, v_all_ids) as z(n, i) where n = v_name));
  end loop;

  -- 4. Housekeeping: graphile jobs of our tasks that can never run again
  --    (their key was handed to a newer job while they were locked, then they
  --    were unlocked), and leases expired for a day.
  perform graphile_worker.complete_jobs(array(
    select j.id from graphile_worker.jobs j
     where j.task_identifier in (select tq.task_identifier from bastion_private.task_queues tq)
       and j.key is null and j.locked_at is null and j.attempts >= j.max_attempts
     limit 1000));
  delete from bastion.snapshot_leases l where l.expires_at < now() - interval '1 day';

  return query select * from unnest(v_all_q, v_all_ids, v_all_statuses);
end
$$;
comment on function bastion_private.task_watchdog(interval, interval) is 'The queues'' watchdog (crontab, every minute): running tasks whose heartbeat is older than p_stale_after go back to retrying (due after p_retry_delay) or are abandoned; graphile-worker locks of dead worker processes are released; dead jobs and old leases are swept. Returns the recovered tasks.';

create function bastion_private.task_lock(p_queue text, p_run_id uuid) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v jsonb;
begin
  execute format('select to_jsonb(t) from %s t where t.run_id = $1 for update', q.task_table) into v using p_run_id;
  if v is null then
    perform bastion_private.raise_error(q.not_found_code, 404, 'task not found', jsonb_build_object('run_id', p_run_id));
  end if;
  return v;
end
$$;
comment on function bastion_private.task_lock(text, uuid) is 'Lock a task row for an operator action and return it as JSON; the queue''s not-found error when absent.';

create function bastion_private.task_retry_now(p_queue text, p_run_id uuid) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v jsonb := bastion_private.task_lock(p_queue, p_run_id);
  v_status text := v ->> 'status';
begin
  if v_status = 'running' then
    perform bastion_private.raise_error('task_running', 409, 'an attempt is running; wait for its outcome', jsonb_build_object('run_id', p_run_id, 'status', v_status));
  end if;
  if v_status not in ('retrying', 'blocked', 'ignored', 'abandoned') then
    perform bastion_private.raise_error('not_retryable', 409, 'only retrying, blocked, ignored or abandoned tasks can be retried', jsonb_build_object('run_id', p_run_id, 'status', v_status));
  end if;
  -- A fresh cycle: attempts and the 30-day age start again (the reference kept
  -- the age and abandoned such a task again at its first failure, §11.19), and
  -- an ignored task stops being ignored.
  execute format($f$
    update %s set status = 'queued', attempts = 0, cycle_started_at = now(), next_attempt_at = now(), last_error_kind = null,
                  last_error = null, ignored_at = null, ignored_by = null, ignore_reason = null, updated_at = now()
     where run_id = $1$f$, q.task_table)
  using p_run_id;
  perform bastion_private.task_append_event(p_queue, p_run_id, 'info', 'retry_now', 'retry requested',
    jsonb_strip_nulls(jsonb_build_object('user_id', bastion_private.current_user_id(), 'previous_status', v_status, 'previous_attempts', (v ->> 'attempts')::integer)));
  perform bastion_private.task_changed(p_queue, array[p_run_id]);
  return bastion_private.task_lock(p_queue, p_run_id);
end
$$;
comment on function bastion_private.task_retry_now(text, uuid) is 'Operator retry: from retrying, blocked, ignored or abandoned to queued, due now, with a fresh attempt budget (409 task_running while an attempt runs, 409 not_retryable otherwise).';

create function bastion_private.task_ignore(p_queue text, p_run_id uuid, p_reason text) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v jsonb := bastion_private.task_lock(p_queue, p_run_id);
  v_status text := v ->> 'status';
  v_reason text := bastion_private.task_clean_reason(p_reason, 200);
begin
  if v_status = 'running' then
    perform bastion_private.raise_error('task_running', 409, 'an attempt is running; wait for its outcome', jsonb_build_object('run_id', p_run_id, 'status', v_status));
  end if;
  if v_status = 'done' then
    perform bastion_private.raise_error('not_ignorable', 409, 'a done task cannot be ignored', jsonb_build_object('run_id', p_run_id, 'status', v_status));
  end if;
  if v_status = 'ignored' then
    return v; -- already ignored: nothing changes, no second event
  end if;
  execute format($f$
    update %s set status = 'ignored', ignored_at = now(), ignored_by = $2, ignore_reason = $3, next_attempt_at = null,
                  updated_at = now()
     where run_id = $1$f$, q.task_table)
  using p_run_id, bastion_private.current_user_id(), v_reason;
  perform bastion_private.task_append_event(p_queue, p_run_id, 'info', 'ignored', 'ignored',
    jsonb_strip_nulls(jsonb_build_object('user_id', bastion_private.current_user_id(), 'reason', v_reason, 'previous_status', v_status)));
  perform bastion_private.task_changed(p_queue, array[p_run_id]);
  return bastion_private.task_lock(p_queue, p_run_id);
end
$$;
comment on function bastion_private.task_ignore(text, uuid, text) is 'Operator ignore: stop the task (no more attempts) with an optional reason cut to 200 characters (409 task_running while an attempt runs, 409 not_ignorable when done; ignoring an ignored task changes nothing).';

create function bastion_private.task_unignore(p_queue text, p_run_id uuid) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  q bastion_private.task_queues := bastion_private.task_queue(p_queue);
  v jsonb := bastion_private.task_lock(p_queue, p_run_id);
  v_status text := v ->> 'status';
begin
  if v_status <> 'ignored' then
    perform bastion_private.raise_error('not_ignored', 409, 'the task is not ignored', jsonb_build_object('run_id', p_run_id, 'status', v_status));
  end if;
  -- Back in the queue with a fresh cycle, like retry-now: an operator who
  -- resumes a task wants it tried, not abandoned at its first failure.
  execute format($f$
    update %s set status = 'queued', attempts = 0, cycle_started_at = now(), next_attempt_at = now(), last_error_kind = null,
                  last_error = null, ignored_at = null, ignored_by = null, ignore_reason = null, updated_at = now()
     where run_id = $1$f$, q.task_table)
  using p_run_id;
  perform bastion_private.task_append_event(p_queue, p_run_id, 'info', 'unignored', 'unignored',
    jsonb_strip_nulls(jsonb_build_object('user_id', bastion_private.current_user_id())));
  perform bastion_private.task_changed(p_queue, array[p_run_id]);
  return bastion_private.task_lock(p_queue, p_run_id);
end
$$;
comment on function bastion_private.task_unignore(text, uuid) is 'Operator unignore: an ignored task goes back to queued, due now, with a fresh attempt budget (409 not_ignored otherwise).';

-- ---------------------------------------------------------------------------
-- Artifact deletes: side effects, requests, operator actions

create function bastion_private.artifact_delete_sync(p_run_ids uuid[]) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_jobs uuid[];
begin
  -- The snapshot mirrors its delete task: deleting while queued, running or
  -- retrying (the error of a retrying task is shown, reference §11.3); error
  -- when blocked, abandoned or ignored (data still there, someone must look);
  -- deleted / missing when done, with the audit columns filled.
  with s as (
    select t.run_id,
           case t.status
             when 'done' then case t.outcome when 'deleted' then 'deleted' else 'missing' end
             when 'blocked' then 'error'
             when 'abandoned' then 'error'
             when 'ignored' then 'error'
             else 'deleting'
           end::bastion.snapshot_status as status,
           t.status = 'done' as done,
           t.requested_by, t.delete_reason, t.last_error_kind::text as last_error_kind, t.last_error, t.last_attempt_at
      from bastion.artifact_delete_tasks t
     where t.run_id = any(p_run_ids)
  ),
  u as (
    update bastion.run_artifacts a
       set status = s.status,
           deleted_at = case when s.status = 'deleted' then coalesce(a.deleted_at, now()) end,
           deleted_by = case when s.done then s.requested_by end,
           delete_reason = case when s.done then s.delete_reason end,
           last_error_kind = s.last_error_kind,
           last_error = s.last_error,
           last_attempt_at = s.last_attempt_at,
           updated_at = now()
      from s
     where a.run_id = s.run_id
       -- Only rows whose status or error changes (a claim alone does not
       -- rewrite the snapshot; last_attempt_at follows with the next write).
       and (a.status, a.deleted_by, a.delete_reason, a.last_error_kind, a.last_error)
           is distinct from (s.status, case when s.done then s.requested_by end, case when s.done then s.delete_reason end,
                             s.last_error_kind, s.last_error)
    returning a.job_id
  )
  select array_agg(distinct job_id) into v_jobs from u;
  -- A job deleted with delete_data_first goes once no snapshot of it is
  -- present, deleting or error (a blocked or ignored delete keeps it, so its
  -- data is never orphaned without an operator deciding: keep_data).
  if v_jobs is not null then
    delete from bastion.jobs j
     where j.id = any(v_jobs) and j.delete_requested_at is not null
       and not exists (select 1 from bastion.run_artifacts a where a.job_id = j.id and a.status in ('present', 'deleting', 'error'));
  end if;
end
$$;
comment on function bastion_private.artifact_delete_sync(uuid[]) is 'Side effects of the delete queue (its sync function): run_artifacts status, errors and audit columns follow the tasks; jobs waiting for their data to go are deleted when nothing live remains.';

create function bastion_private.lock_snapshot(p_job_id uuid, p_run_id uuid) returns bastion.run_artifacts
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.run_artifacts;
begin
  perform 1 from bastion.jobs j where j.id = p_job_id;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', p_job_id));
  end if;
  select * into v from bastion.run_artifacts a where a.run_id = p_run_id and a.job_id = p_job_id for update;
  if not found then
    perform bastion_private.raise_error('snapshot_not_found', 404, 'snapshot not found in this job', jsonb_build_object('job_id', p_job_id, 'run_id', p_run_id));
  end if;
  return v;
end
$$;
comment on function bastion_private.lock_snapshot(uuid, uuid) is 'Lock a snapshot of a job for a change; job_not_found / snapshot_not_found (also when it belongs to another job).';

create function bastion_private.enqueue_snapshot_deletes(p_job_id uuid, p_run_ids uuid[], p_force boolean, p_reason text, p_requested_by uuid,
                                                         p_message text default 'delete queued', p_fields jsonb default null)
returns table (run_id uuid, outcome text)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_ids uuid[];
  v_jobs uuid[];
  v_bad uuid[];
  v_new uuid[];
  v_requeue uuid[];
  v_already uuid[];
  v_deleted uuid[];
  v_missing uuid[];
  v_force boolean := coalesce(p_force, false);
  v_reason text := bastion_private.task_clean_reason(p_reason, 200);
begin
  select coalesce(array_agg(distinct x order by x), '{}') into v_ids from unnest(coalesce(p_run_ids, '{}'::uuid[])) as u(x) where x is not null;
  if cardinality(v_ids) = 0 then
    perform bastion_private.raise_error('empty_run_ids', 400, 'run_ids must name at least one snapshot', jsonb_build_object('field', 'run_ids', 'reason', 'empty'));
  end if;
  if cardinality(v_ids) > 1000 then
    perform bastion_private.raise_error('too_many_run_ids', 400, 'at most 1000 run ids per request',
      jsonb_build_object('field', 'run_ids', 'reason', 'too_many', 'max', 1000, 'count', cardinality(v_ids)));
  end if;
  if p_fields is not null and jsonb_typeof(p_fields) <> 'object' then
    perform bastion_private.raise_error('invalid_input', 400, 'fields must be a JSON object', jsonb_build_object('field', 'fields', 'reason', 'not_object'));
  end if;
  -- The job rows (shared, in job id order), then the existing task rows, then
  -- the snapshot rows (each in run id order) are locked until commit:
  -- concurrent requests, pins, leases and job deletes serialise on them.
  -- Tasks before snapshots is the order every queue transition takes (a claim
  -- or an outcome updates its tasks, then syncs their snapshots), so the two
  -- never deadlock. p_job_id NULL (retention's batches: one call for the
  -- snapshots of many jobs) means each snapshot's own job: the jobs are read
  -- from the snapshots (a snapshot never changes job) and locked the same way.
  if p_job_id is not null then
    v_jobs := array[p_job_id];
    perform 1 from bastion.jobs j where j.id = p_job_id for share;
    if not found then
      perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', p_job_id));
    end if;
  else
    select coalesce(array_agg(distinct a.job_id order by a.job_id), '{}') into v_jobs from bastion.run_artifacts a where a.run_id = any(v_ids);
    perform 1 from bastion.jobs j where j.id = any(v_jobs) order by j.id for share;
  end if;
  perform 1 from bastion.artifact_delete_tasks t where t.run_id = any(v_ids) and t.job_id = any(v_jobs) order by t.run_id for update;
  perform 1 from bastion.run_artifacts a where a.run_id = any(v_ids) and a.job_id = any(v_jobs) order by a.run_id for update;
  select array_agg(x order by x) into v_bad
    from unnest(v_ids) x
   where not exists (select 1 from bastion.run_artifacts a where a.run_id = x and a.job_id = any(v_jobs));
  if v_bad is not null then
    perform bastion_private.raise_error('snapshot_not_found', 404,
      case when p_job_id is null then 'some snapshots do not exist; nothing was queued' else 'some snapshots do not exist in this job; nothing was queued' end,
      jsonb_build_object('field', 'run_ids', 'run_ids', to_jsonb(v_bad[1:20]), 'count', cardinality(v_bad)));
  end if;

  -- What each snapshot needs: deleted/missing are no-ops; a task already
  -- waiting or running is enough; a task that stopped (blocked, abandoned,
  -- ignored, done) is requeued — the same row, never a second task.
  select coalesce(array_agg(a.run_id order by a.run_id) filter (where a.status not in ('deleted', 'missing') and t.run_id is null), '{}'),
         coalesce(array_agg(a.run_id order by a.run_id) filter (where a.status not in ('deleted', 'missing') and t.status in ('blocked', 'abandoned', 'ignored', 'done')), '{}'),
         coalesce(array_agg(a.run_id order by a.run_id) filter (where a.status not in ('deleted', 'missing') and t.status in ('queued', 'running', 'retrying')), '{}'),
         coalesce(array_agg(a.run_id order by a.run_id) filter (where a.status = 'deleted'), '{}'),
         coalesce(array_agg(a.run_id order by a.run_id) filter (where a.status = 'missing'), '{}')
    into v_new, v_requeue, v_already, v_deleted, v_missing
    from bastion.run_artifacts a
    left join bastion.artifact_delete_tasks t on t.run_id = a.run_id
   where a.run_id = any(v_ids);

  if not v_force then
    select array_agg(a.run_id order by a.run_id) into v_bad
      from bastion.run_artifacts a
     where a.run_id = any(v_new || v_requeue) and a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now());
    if v_bad is not null then
      perform bastion_private.raise_error('snapshot_pinned', 409, 'some snapshots are pinned; unpin them or pass force; nothing was queued',
        jsonb_build_object('field', 'run_ids', 'run_ids', to_jsonb(v_bad[1:20]), 'count', cardinality(v_bad)));
    end if;
    select array_agg(distinct l.run_id order by l.run_id) into v_bad
      from bastion.snapshot_leases l
     where l.run_id = any(v_new || v_requeue) and l.expires_at > now();
    if v_bad is not null then
      perform bastion_private.raise_error('snapshot_in_use', 409, 'some snapshots are in use by a restore, verify or relay; pass force to delete anyway; nothing was queued',
        jsonb_build_object('field', 'run_ids', 'run_ids', to_jsonb(v_bad[1:20]), 'count', cardinality(v_bad)));
    end if;
  end if;

  insert into bastion.artifact_delete_tasks (run_id, job_id, node_id, target_type, target_snapshot, next_attempt_at, requested_by, delete_reason, force, event_seq)
  select a.run_id, a.job_id, a.node_id, a.target_type, a.target_snapshot, now(), p_requested_by, v_reason, v_force, 1
    from bastion.run_artifacts a
   where a.run_id = any(v_new);
  insert into bastion.artifact_delete_events (run_id, seq, level, kind, message, fields)
  select x, 1, 'info', 'queued', left(p_message, 1000),
         jsonb_strip_nulls(coalesce(p_fields, '{}'::jsonb) || jsonb_build_object('user_id', p_requested_by, 'reason', v_reason, 'force', v_force))
    from unnest(v_new) x;

  with u as (
    update bastion.artifact_delete_tasks t
       set status = 'queued', attempts = 0, cycle_started_at = now(), next_attempt_at = now(), last_error_kind = null, last_error = null,
           outcome = null, ignored_at = null, ignored_by = null, ignore_reason = null, requested_by = p_requested_by,
           delete_reason = v_reason, force = v_force, updated_at = now(), event_seq = t.event_seq + 1
      from bastion.artifact_delete_tasks p
     where p.run_id = t.run_id and t.run_id = any(v_requeue)
    returning t.run_id, t.event_seq, p.status as previous_status, p.attempts as previous_attempts
  )
  insert into bastion.artifact_delete_events (run_id, seq, level, kind, message, fields)
  select u.run_id, u.event_seq, 'info', 'requeued', left(p_message || ' (requeued)', 1000),
         jsonb_strip_nulls(coalesce(p_fields, '{}'::jsonb) || jsonb_build_object('user_id', p_requested_by, 'reason', v_reason, 'force', v_force,
                                              'previous_status', u.previous_status, 'previous_attempts', u.previous_attempts))
    from u;

  perform bastion_private.task_changed('artifact_delete', v_new || v_requeue);
  return query
    select x, 'enqueued' from unnest(v_new) x
    union all select x, 'requeued' from unnest(v_requeue) x
    union all select x, 'already_queued' from unnest(v_already) x
    union all select x, 'noop_deleted' from unnest(v_deleted) x
    union all select x, 'noop_missing' from unnest(v_missing) x
    order by 1;
end
$$;
comment on function bastion_private.enqueue_snapshot_deletes(uuid, uuid[], boolean, text, uuid, text, jsonb) is 'The one way snapshots enter the delete queue (requests, archive cascade, job delete, retention): up to 1000 run ids of job p_job_id, or of any jobs when p_job_id is NULL (each snapshot''s own job), all or nothing; p_fields (an object) is merged into the fields of the queued/requeued events. Outcomes enqueued | requeued | already_queued | noop_deleted | noop_missing.';

create function bastion.request_snapshot_deletes(job_id uuid, run_ids uuid[], force boolean default false, reason text default null)
returns table (run_id uuid, outcome text)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- A request names its job: NULL would mean "each snapshot's own job" to the private function.
  if $1 is null then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', null));
  end if;
  return query select * from bastion_private.enqueue_snapshot_deletes($1, $2, coalesce($3, false), $4, bastion_private.current_user_id(), 'delete queued');
end
$$;
comment on function bastion.request_snapshot_deletes(uuid, uuid[], boolean, text) is 'Delete snapshots of a job (1 to 1000 run ids, validated as a whole: all queued or none). Pinned (snapshot_pinned) and leased (snapshot_in_use) snapshots need force. Returns each run id with enqueued, requeued, already_queued, noop_deleted or noop_missing.';

create function bastion.request_snapshot_delete(job_id uuid, run_id uuid, force boolean default false, reason text default null) returns text
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- A request names its job: NULL would mean "each snapshot's own job" to the private function.
  if $1 is null then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', null));
  end if;
  return (select r.outcome from bastion_private.enqueue_snapshot_deletes($1, array[$2], coalesce($3, false), $4, bastion_private.current_user_id(), 'delete queued') r);
end
$$;
comment on function bastion.request_snapshot_delete(uuid, uuid, boolean, text) is 'Delete one snapshot (see request_snapshot_deletes); returns enqueued, requeued, already_queued, noop_deleted or noop_missing.';

create function bastion_private.require_delete_task(p_job_id uuid, p_run_id uuid) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform 1 from bastion.jobs j where j.id = p_job_id;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', p_job_id));
  end if;
  perform 1 from bastion.artifact_delete_tasks t where t.run_id = p_run_id and t.job_id = p_job_id;
  if not found then
    perform bastion_private.raise_error('delete_task_not_found', 404, 'no delete task for this snapshot in this job', jsonb_build_object('job_id', p_job_id, 'run_id', p_run_id));
  end if;
end
$$;
comment on function bastion_private.require_delete_task(uuid, uuid) is 'job_not_found / delete_task_not_found unless the job has a delete task for the run.';

create function bastion.retry_artifact_delete_now(job_id uuid, run_id uuid) returns bastion.artifact_delete_tasks
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform bastion_private.require_delete_task($1, $2);
  return jsonb_populate_record(null::bastion.artifact_delete_tasks, bastion_private.task_retry_now('artifact_delete', $2));
end
$$;
comment on function bastion.retry_artifact_delete_now(uuid, uuid) is 'Retry a snapshot delete now with a fresh attempt budget: from retrying, blocked, ignored or abandoned (409 task_running, 409 not_retryable).';

create function bastion.ignore_artifact_delete(job_id uuid, run_id uuid, reason text default null) returns bastion.artifact_delete_tasks
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform bastion_private.require_delete_task($1, $2);
  return jsonb_populate_record(null::bastion.artifact_delete_tasks, bastion_private.task_ignore('artifact_delete', $2, $3));
end
$$;
comment on function bastion.ignore_artifact_delete(uuid, uuid, text) is 'Stop retrying a snapshot delete (reason cut to 200 characters); the snapshot shows error. 409 task_running, 409 not_ignorable when done.';

create function bastion.unignore_artifact_delete(job_id uuid, run_id uuid) returns bastion.artifact_delete_tasks
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  perform bastion_private.require_delete_task($1, $2);
  return jsonb_populate_record(null::bastion.artifact_delete_tasks, bastion_private.task_unignore('artifact_delete', $2));
end
$$;
comment on function bastion.unignore_artifact_delete(uuid, uuid) is 'Put an ignored snapshot delete back in the queue, due now, with a fresh attempt budget (409 not_ignored).';

-- ---------------------------------------------------------------------------
-- Pins

create function bastion.pin_snapshot(job_id uuid, run_id uuid, reason text default null, expires_at timestamptz default null) returns bastion.run_artifacts
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.run_artifacts := bastion_private.lock_snapshot($1, $2);
begin
  if v.status <> 'present' then
    perform bastion_private.raise_error('snapshot_not_present', 409, 'only present snapshots can be pinned', jsonb_build_object('run_id', $2, 'status', v.status));
  end if;
  if $4 is not null and $4 <= now() then
    perform bastion_private.raise_error('invalid_input', 400, 'expires_at must be in the future', jsonb_build_object('field', 'expires_at', 'reason', 'not_in_future'));
  end if;
  -- Pinning again replaces pinner, reason, expiry and time (reference §1.6).
  update bastion.run_artifacts a
     set pinned_at = now(), pinned_by = bastion_private.current_user_id(), pin_reason = bastion_private.task_clean_reason($3, 200),
         pin_expires_at = $4, updated_at = now()
   where a.run_id = $2
  returning * into v;
  return v;
end
$$;
comment on function bastion.pin_snapshot(uuid, uuid, text, timestamptz) is 'Pin a present snapshot (optional reason ≤ 200 characters, optional expiry in the future): retention and job cascades skip it, a manual delete needs force. 409 snapshot_not_present.';

create function bastion.unpin_snapshot(job_id uuid, run_id uuid) returns bastion.run_artifacts
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.run_artifacts := bastion_private.lock_snapshot($1, $2);
begin
  update bastion.run_artifacts a
     set pinned_at = null, pinned_by = null, pin_reason = null, pin_expires_at = null, updated_at = now()
   where a.run_id = $2 and a.pinned_at is not null
  returning * into v;
  if not found then
    select * into v from bastion.run_artifacts a where a.run_id = $2;
  end if;
  return v;
end
$$;
comment on function bastion.unpin_snapshot(uuid, uuid) is 'Remove a pin (no-op when not pinned).';

-- ---------------------------------------------------------------------------
-- Leases (used by restore, verify and the hub relay)

create function bastion.acquire_snapshot_lease(run_id uuid, holder_kind bastion.lease_holder_kind, operation_id uuid, ttl_seconds integer default 300)
returns bastion.snapshot_leases
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_status bastion.snapshot_status;
  v bastion.snapshot_leases;
begin
  if $4 is null or $4 < 10 or $4 > 86400 then
    perform bastion_private.raise_error('invalid_input', 400, 'ttl_seconds must be between 10 and 86400', jsonb_build_object('field', 'ttl_seconds', 'reason', 'out_of_range'));
  end if;
  if $2 is null or $3 is null then
    perform bastion_private.raise_error('invalid_input', 400, 'holder_kind and operation_id are required', jsonb_build_object('field', case when $2 is null then 'holder_kind' else 'operation_id' end, 'reason', 'required'));
  end if;
  -- Locks the snapshot like a delete request does, so a lease and a delete
  -- never both succeed on a present snapshot.
  select a.status into v_status from bastion.run_artifacts a where a.run_id = $1 for update;
  if not found then
    perform bastion_private.raise_error('snapshot_not_found', 404, 'snapshot not found', jsonb_build_object('run_id', $1));
  end if;
  if v_status <> 'present' then
    perform bastion_private.raise_error('snapshot_not_present', 409, 'the snapshot is not present (being deleted, deleted or missing)', jsonb_build_object('run_id', $1, 'status', v_status));
  end if;
  insert into bastion.snapshot_leases as l (run_id, holder_kind, operation_id, expires_at, acquired_by)
  values ($1, $2, $3, now() + make_interval(secs => $4), bastion_private.current_user_id())
  on conflict on constraint snapshot_leases_holder_key do update set expires_at = excluded.expires_at
  returning * into v;
  return v;
end
$$;
comment on function bastion.acquire_snapshot_lease(uuid, bastion.lease_holder_kind, uuid, integer) is 'Hold a present snapshot for an operation for ttl_seconds (10–86400; acquiring again extends): deletes are refused with snapshot_in_use unless forced. 409 snapshot_not_present.';

create function bastion.renew_snapshot_lease(lease_id uuid, ttl_seconds integer default 300) returns bastion.snapshot_leases
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.snapshot_leases;
  v_status bastion.snapshot_status;
begin
  if $2 is null or $2 < 10 or $2 > 86400 then
    perform bastion_private.raise_error('invalid_input', 400, 'ttl_seconds must be between 10 and 86400', jsonb_build_object('field', 'ttl_seconds', 'reason', 'out_of_range'));
  end if;
  select * into v from bastion.snapshot_leases l where l.id = $1;
  if not found then
    perform bastion_private.raise_error('lease_not_found', 404, 'lease not found (released, or expired and swept)', jsonb_build_object('lease_id', $1));
  end if;
  select a.status into v_status from bastion.run_artifacts a where a.run_id = v.run_id for update;
  if v_status <> 'present' then
    perform bastion_private.raise_error('snapshot_not_present', 409, 'the snapshot is no longer present (a forced delete)', jsonb_build_object('run_id', v.run_id, 'status', v_status));
  end if;
  update bastion.snapshot_leases l set expires_at = now() + make_interval(secs => $2) where l.id = $1 returning * into v;
  return v;
end
$$;
comment on function bastion.renew_snapshot_lease(uuid, integer) is 'Extend a lease to now + ttl_seconds. 404 lease_not_found, 409 snapshot_not_present when a forced delete took the snapshot.';

create function bastion.release_snapshot_lease(lease_id uuid) returns boolean
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  with d as (delete from bastion.snapshot_leases l where l.id = $1 returning 1)
  select exists (select 1 from d)
$$;
comment on function bastion.release_snapshot_lease(uuid) is 'Release a lease; false when it did not exist.';

-- ---------------------------------------------------------------------------
-- Job archive, unarchive and delete (seed 002 milestone 5, seed 004)

create function bastion_private.enqueue_job_snapshot_deletes(p_job_id uuid, p_statuses bastion.snapshot_status[], p_force boolean, p_reason text, p_message text)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_ids uuid[];
  v_counts jsonb := '{}';
  v_chunk uuid[];
  v_outcome record;
  i integer := 1;
begin
  -- Every matching snapshot, not one page: enqueue in chunks of 1000 (the
  -- request limit) inside the caller's transaction.
  select coalesce(array_agg(a.run_id order by a.run_id), '{}') into v_ids
    from bastion.run_artifacts a
   where a.job_id = p_job_id and a.status = any(p_statuses);
  while i <= cardinality(v_ids) loop
    v_chunk := v_ids[i:i + 999];
    for v_outcome in select * from bastion_private.enqueue_snapshot_deletes(p_job_id, v_chunk, p_force, p_reason, bastion_private.current_user_id(), p_message) loop
      v_counts := jsonb_set(v_counts, array[v_outcome.outcome], to_jsonb(coalesce((v_counts ->> v_outcome.outcome)::integer, 0) + 1));
    end loop;
    i := i + 1000;
  end loop;
  return v_counts;
end
$$;
comment on function bastion_private.enqueue_job_snapshot_deletes(uuid, bastion.snapshot_status[], boolean, text, text) is 'Enqueue deletes for every snapshot of a job in the given statuses (chunks of 1000); returns counts per outcome.';

create function bastion.archive_job(job_id uuid, cascade_snapshots boolean default false) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_job bastion.jobs;
  v_archived boolean := false;
  v_candidates uuid[];
  v_pinned integer := 0;
  v_leased integer := 0;
  v_counts jsonb := '{}';
  v_chunk uuid[];
  v_outcome record;
  i integer := 1;
begin
  select * into v_job from bastion.jobs j where j.id = $1 for update;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', $1));
  end if;
  if v_job.archived_at is null then
    update bastion.jobs j set archived_at = now(), archived_by = bastion_private.current_user_id(), updated_at = now() where j.id = $1;
    v_archived := true;
  end if;
  if coalesce($2, false) then
    -- Every present snapshot that is not pinned and not in use (all pages;
    -- the reference stopped at 1000). Asking again later picks up the rest.
    select count(*) filter (where a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now())),
           count(*) filter (where not (a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now()))
                              and exists (select 1 from bastion.snapshot_leases l where l.run_id = a.run_id and l.expires_at > now())),
           coalesce(array_agg(a.run_id order by a.run_id) filter (
             where not (a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now()))
               and not exists (select 1 from bastion.snapshot_leases l where l.run_id = a.run_id and l.expires_at > now())), '{}')
      into v_pinned, v_leased, v_candidates
      from bastion.run_artifacts a
     where a.job_id = $1 and a.status = 'present';
    while i <= cardinality(v_candidates) loop
      v_chunk := v_candidates[i:i + 999];
      for v_outcome in select * from bastion_private.enqueue_snapshot_deletes($1, v_chunk, false, 'job_archive_cascade', bastion_private.current_user_id(), 'delete queued (job archive cascade)') loop
        v_counts := jsonb_set(v_counts, array[v_outcome.outcome], to_jsonb(coalesce((v_counts ->> v_outcome.outcome)::integer, 0) + 1));
      end loop;
      i := i + 1000;
    end loop;
  end if;
  return jsonb_build_object('job_id', $1, 'archived', v_archived, 'enqueued', coalesce((v_counts ->> 'enqueued')::integer, 0),
                            'skipped_pinned', v_pinned, 'skipped_in_use', v_leased);
end
$$;
comment on function bastion.archive_job(uuid, boolean) is 'Archive a job (never scheduled again; history and snapshots stay). With cascade_snapshots, also queue deletes for every present snapshot that is not pinned or in use (reason job_archive_cascade). Returns {job_id, archived (false if it already was), enqueued, skipped_pinned, skipped_in_use}.';

create function bastion.unarchive_job(job_id uuid) returns bastion.jobs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.jobs;
begin
  select * into v from bastion.jobs j where j.id = $1 for update;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', $1));
  end if;
  if v.delete_requested_at is not null then
    perform bastion_private.raise_error('job_deleting', 409, 'the job is being deleted with its data', jsonb_build_object('job_id', $1));
  end if;
  if v.archived_at is not null then
    begin
      update bastion.jobs j set archived_at = null, archived_by = null, updated_at = now() where j.id = $1 returning * into v;
    exception when unique_violation then
      perform bastion_private.raise_error('job_name_taken', 409, 'another job that is not archived has this name; rename one first', jsonb_build_object('job_id', $1, 'field', 'name'));
    end;
  end if;
  return v;
end
$$;
comment on function bastion.unarchive_job(uuid) is 'Unarchive a job (scheduled again). 409 job_deleting, 409 job_name_taken when an active job has its name.';

create function bastion.delete_job(job_id uuid, mode bastion.job_delete_mode, force boolean default false) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_job bastion.jobs;
  v_live integer;
  v_counts jsonb;
  v_running integer;
begin
  if $2 is null then
    perform bastion_private.raise_error('invalid_input', 400, 'mode is required: delete_data_first or keep_data', jsonb_build_object('field', 'mode', 'reason', 'required'));
  end if;
  select * into v_job from bastion.jobs j where j.id = $1 for update;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', $1));
  end if;
  select count(*) into v_live from bastion.run_artifacts a where a.job_id = $1 and a.status in ('present', 'deleting', 'error');

  if $2 = 'keep_data' then
    -- Explicit: the job, its runs, its snapshot index and its queued deletes
    -- go; the data stays on the targets, unmanaged. An attempt in flight
    -- would still remove one snapshot, so wait for it.
    select count(*) into v_running from bastion.artifact_delete_tasks t where t.job_id = $1 and t.status = 'running';
    if v_running > 0 then
      perform bastion_private.raise_error('task_running', 409, 'delete attempts of this job are running; retry in a moment', jsonb_build_object('job_id', $1, 'running', v_running));
    end if;
    perform graphile_worker.remove_job('artifact-delete:' || t.run_id) from bastion.artifact_delete_tasks t where t.job_id = $1;
    delete from bastion.jobs j where j.id = $1;
    raise log 'bastion: job % (%) deleted with keep_data: % snapshots left on their targets, no longer indexed', $1, v_job.name, v_live;
    return jsonb_build_object('job_id', $1, 'mode', 'keep_data', 'job_deleted', true, 'snapshots_left_on_targets', v_live);
  end if;

  -- delete_data_first: archive (never scheduled again), mark, and queue every
  -- live snapshot (present ones, and error ones whose delete stopped); the row
  -- goes when none is present, deleting or error (artifact_delete_sync).
  update bastion.jobs j
     set archived_at = coalesce(j.archived_at, now()), archived_by = case when j.archived_at is null then bastion_private.current_user_id() else j.archived_by end,
         delete_requested_at = coalesce(j.delete_requested_at, now()), delete_requested_by = coalesce(j.delete_requested_by, bastion_private.current_user_id()),
         updated_at = now()
   where j.id = $1;
  v_counts := bastion_private.enqueue_job_snapshot_deletes($1, array['present', 'error']::bastion.snapshot_status[], coalesce($3, false), 'job_delete', 'delete queued (job delete)');
  if v_live = 0 then
    delete from bastion.jobs j where j.id = $1;
  end if;
  return jsonb_build_object('job_id', $1, 'mode', 'delete_data_first', 'job_deleted', v_live = 0, 'snapshots_to_delete', v_live) || v_counts;
end
$$;
comment on function bastion.delete_job(uuid, bastion.job_delete_mode, boolean) is 'Delete a job. delete_data_first: archive it and queue deletes of all its snapshots (pinned or in use ones need force); the job row goes when they are done. keep_data: delete the job and its index now, leaving the data on the targets (409 task_running while a delete attempt runs). Returns what was done.';

-- ---------------------------------------------------------------------------
-- Change notifications (topic bastion:run:<run_id>:delete; see 0002 and
-- docs/api.md: the deleteTaskChanged subscription listens on it)
--
-- The payloads are those of 0002's bastion_private.notify_change (tasks:
-- {table, op, run_id, status}; events: {table, op, run_id, seq, kind}), sent
-- by statement-level triggers over the transition tables: the queue writes
-- in bulk (a retention batch queues thousands of deletes in one statement).
-- Measured on a 1000-snapshot request (~104 ms without notifications):
-- row-level notify_change triggers added ~26 ms (to_jsonb of the whole row
-- and one PL/pgSQL call per task and per event), these add ~6 ms; over the
-- benchmark's retention tick (43,000 deletes) that is ~1.1 s vs ~0.25 s.
-- Heartbeats and event_seq bumps change neither status nor updated_at and
-- stay silent; the event's own notification speaks for the bump.

create function bastion_private.artifact_delete_notify() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_table_name = 'artifact_delete_events' then
    perform pg_notify('bastion:run:' || n.run_id || ':delete',
                      json_build_object('table', tg_table_name, 'op', 'insert', 'run_id', n.run_id, 'seq', n.seq, 'kind', n.kind)::text)
       from new_rows n;
  elsif tg_op = 'INSERT' then
    perform pg_notify('bastion:run:' || n.run_id || ':delete',
                      json_build_object('table', tg_table_name, 'op', 'insert', 'run_id', n.run_id, 'status', n.status)::text)
       from new_rows n;
  elsif tg_op = 'UPDATE' then
    perform pg_notify('bastion:run:' || n.run_id || ':delete',
                      json_build_object('table', tg_table_name, 'op', 'update', 'run_id', n.run_id, 'status', n.status)::text)
       from new_rows n join old_rows o on o.run_id = n.run_id
      where o.status is distinct from n.status or o.updated_at is distinct from n.updated_at;
  else
    perform pg_notify('bastion:run:' || o.run_id || ':delete',
                      json_build_object('table', tg_table_name, 'op', 'delete', 'run_id', o.run_id, 'status', o.status)::text)
       from old_rows o;
  end if;
  return null;
end
$$;
comment on function bastion_private.artifact_delete_notify() is 'AFTER STATEMENT trigger of the delete queue tables (transition tables new_rows/old_rows): NOTIFY bastion:run:<run_id>:delete per changed task (insert, delete, or an update of status or updated_at) and per new event, with the payloads of notify_change.';

create trigger artifact_delete_tasks_notify_insert after insert on bastion.artifact_delete_tasks
  referencing new table as new_rows
  for each statement execute function bastion_private.artifact_delete_notify();
create trigger artifact_delete_tasks_notify_update after update on bastion.artifact_delete_tasks
  referencing old table as old_rows new table as new_rows
  for each statement execute function bastion_private.artifact_delete_notify();
create trigger artifact_delete_tasks_notify_delete after delete on bastion.artifact_delete_tasks
  referencing old table as old_rows
  for each statement execute function bastion_private.artifact_delete_notify();
create trigger artifact_delete_events_notify after insert on bastion.artifact_delete_events
  referencing new table as new_rows
  for each statement execute function bastion_private.artifact_delete_notify();

-- ---------------------------------------------------------------------------
-- Registration, row-level security, grants

insert into bastion_private.task_queues (name, task_table, event_table, task_identifier, sync_function, not_found_code)
values ('artifact_delete', 'bastion.artifact_delete_tasks', 'bastion.artifact_delete_events', 'artifact-delete',
        'bastion_private.artifact_delete_sync(uuid[])', 'delete_task_not_found');

alter table bastion.artifact_delete_tasks enable row level security;
alter table bastion.artifact_delete_events enable row level security;
alter table bastion.snapshot_leases enable row level security;
grant select on bastion.artifact_delete_tasks, bastion.artifact_delete_events, bastion.snapshot_leases to bastion_viewer;
create policy artifact_delete_tasks_select on bastion.artifact_delete_tasks for select to bastion_viewer using (true);
create policy artifact_delete_events_select on bastion.artifact_delete_events for select to bastion_viewer using (true);
create policy snapshot_leases_select on bastion.snapshot_leases for select to bastion_viewer using (true);

-- Operators pin, delete, retry, ignore, archive and hold leases for the
-- operations they start; deleting a job (irreversible for its definition and
-- history) is for admins — an operator's way to remove a job and its data is
-- archive with cascade. Worker-side functions (claim, heartbeat, finish,
-- release, watchdog) are granted to no application role: workers connect as
-- the owner.
grant execute on function bastion.request_snapshot_deletes(uuid, uuid[], boolean, text) to bastion_operator;
grant execute on function bastion.request_snapshot_delete(uuid, uuid, boolean, text) to bastion_operator;
grant execute on function bastion.retry_artifact_delete_now(uuid, uuid) to bastion_operator;
grant execute on function bastion.ignore_artifact_delete(uuid, uuid, text) to bastion_operator;
grant execute on function bastion.unignore_artifact_delete(uuid, uuid) to bastion_operator;
grant execute on function bastion.pin_snapshot(uuid, uuid, text, timestamptz) to bastion_operator;
grant execute on function bastion.unpin_snapshot(uuid, uuid) to bastion_operator;
grant execute on function bastion.acquire_snapshot_lease(uuid, bastion.lease_holder_kind, uuid, integer) to bastion_operator;
grant execute on function bastion.renew_snapshot_lease(uuid, integer) to bastion_operator;
grant execute on function bastion.release_snapshot_lease(uuid) to bastion_operator;
grant execute on function bastion.archive_job(uuid, boolean) to bastion_operator;
grant execute on function bastion.unarchive_job(uuid) to bastion_operator;
grant execute on function bastion.delete_job(uuid, bastion.job_delete_mode, boolean) to bastion_admin;
