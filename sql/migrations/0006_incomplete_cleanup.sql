-- 0006_incomplete_cleanup: runs that never completed leave partial data on
-- their targets; this queue removes it (seed 004, DESIGN §5–§6, issue 6).
--
-- It is the second registration of the generic task queue of 0004
-- (bastion_private.task_queues + the bastion_private.task_* functions): the
-- claim, heartbeat, outcomes with backoff and abandon, release, watchdog and
-- the operator actions are that code, not a copy. What is new here:
--
-- * bastion.incomplete_cleanup_tasks / _events: the generic task columns plus
--   target_snapshot_source (where the location came from). Error kinds are
--   network | io | auth | config | unknown | offline (the shared enum minus
--   `http`: the worker maps WebDAV's "other 4xx" to config, reference §3.3).
--   Done outcomes: skip_complete (complete.json present: the data is whole,
--   nothing is deleted), skip_not_found (no run directory, or one that does
--   not look like Bastion data and is left alone), deleted.
-- * Reconcile (bastion_private.incomplete_cleanup_reconcile, called by the
--   crontab task in bounded batches): runs that are failed, canceled or
--   rejected (never success, never still queued/running), started — or
--   created, for runs that never started — before now − settings
--   .incomplete_cleanup_days (0 turns cleanup off), and without a task get one
--   with the run's stored target snapshot. Runs without a usable snapshot are
--   handed back to the worker, which builds one from the job's current spec in
--   TypeScript (core/job-spec + core/target-snapshot) and calls
--   bastion_private.incomplete_cleanup_enqueue (saving it back onto the run),
--   or records a skip (bastion_private.incomplete_cleanup_skips) so the run is
--   not retried every tick — until the job is edited. Existing tasks are never
--   reset: a done, ignored or abandoned task stays what it is.
-- * Operator actions bastion.retry_incomplete_cleanup_now, ignore_…, unignore_…
--   (operators; the 409 rules of task_retry_now / task_ignore / task_unignore)
--   wake a worker at once: the task's graphile job is (re)added with run_at now
--   in the same transaction. bastion.set_incomplete_cleanup_days (admins).
-- * NOTIFY bastion:run:<run_id>:cleanup for task changes and new events (the
--   topic 0002 reserved; gateway/graphql/subscriptions.ts listens on it).

-- ---------------------------------------------------------------------------
-- Tables

create table bastion.incomplete_cleanup_tasks (
  run_id uuid primary key references bastion.runs (id) on delete cascade,
  job_id uuid not null references bastion.jobs (id) on delete cascade,
  node_id text not null constraint incomplete_cleanup_tasks_node_id_format check (bastion_private.is_node_id(node_id)),
  target_type bastion.target_type not null,
  target_snapshot jsonb not null constraint incomplete_cleanup_tasks_target_snapshot_object check (jsonb_typeof(target_snapshot) = 'object'),
  target_snapshot_source text not null default 'run'
    constraint incomplete_cleanup_tasks_target_snapshot_source_values check (target_snapshot_source in ('run', 'job_spec')),
  -- local_dir data is cleaned on the node that holds it; WebDAV data by the hub, which holds the node-scoped secrets (DESIGN §6).
  executor_node_id text generated always as (case when target_type = 'webdav' then 'hub' else node_id end) stored,
  status bastion.task_status not null default 'queued',
  attempts integer not null default 0 constraint incomplete_cleanup_tasks_attempts_nonnegative check (attempts >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  cycle_started_at timestamptz not null default now(),
  next_attempt_at timestamptz,
  last_attempt_at timestamptz,
  heartbeat_at timestamptz,
  claimed_by text constraint incomplete_cleanup_tasks_claimed_by_length check (char_length(claimed_by) <= 128),
  last_error_kind bastion.task_error_kind constraint incomplete_cleanup_tasks_error_kinds check (last_error_kind <> 'http'),
  last_error text constraint incomplete_cleanup_tasks_last_error_length check (octet_length(last_error) <= 500),
  outcome text constraint incomplete_cleanup_tasks_outcome_values check (outcome in ('skip_complete', 'skip_not_found', 'deleted')),
  ignored_at timestamptz,
  ignored_by uuid references bastion.users (id) on delete set null,
  ignore_reason text constraint incomplete_cleanup_tasks_ignore_reason_length check (char_length(ignore_reason) <= 200),
  event_seq integer not null default 0 constraint incomplete_cleanup_tasks_event_seq_nonnegative check (event_seq >= 0),
  constraint incomplete_cleanup_tasks_scheduled_iff_waiting check ((status in ('queued', 'retrying', 'blocked')) = (next_attempt_at is not null)),
  constraint incomplete_cleanup_tasks_running_has_heartbeat check ((status = 'running') = (heartbeat_at is not null and claimed_by is not null)),
  constraint incomplete_cleanup_tasks_running_was_attempted check (status <> 'running' or last_attempt_at is not null),
  constraint incomplete_cleanup_tasks_attempted_unless_queued_or_ignored check (status in ('queued', 'ignored') or attempts >= 1),
  constraint incomplete_cleanup_tasks_queued_is_fresh check (status <> 'queued' or (attempts = 0 and last_error_kind is null and last_error is null)),
  constraint incomplete_cleanup_tasks_done_has_outcome check ((status = 'done') = (outcome is not null)),
  constraint incomplete_cleanup_tasks_done_has_no_error check (status <> 'done' or (last_error_kind is null and last_error is null)),
  constraint incomplete_cleanup_tasks_failed_has_error check (status not in ('retrying', 'blocked', 'abandoned') or last_error_kind is not null),
  constraint incomplete_cleanup_tasks_blocked_kind check (status <> 'blocked' or last_error_kind in ('auth', 'config')),
  constraint incomplete_cleanup_tasks_ignored_has_ignored_at check ((status = 'ignored') = (ignored_at is not null)),
  constraint incomplete_cleanup_tasks_ignore_fields_need_ignored check (ignored_at is not null or (ignored_by is null and ignore_reason is null)),
  constraint incomplete_cleanup_tasks_node_matches_snapshot check (target_snapshot ->> 'node_id' = node_id),
  constraint incomplete_cleanup_tasks_target_type_matches_snapshot check (target_snapshot -> 'target' ->> 'type' = target_type::text)
);
create index incomplete_cleanup_tasks_due_idx on bastion.incomplete_cleanup_tasks (executor_node_id, target_type, next_attempt_at) where status in ('queued', 'retrying', 'blocked');
create index incomplete_cleanup_tasks_running_idx on bastion.incomplete_cleanup_tasks (heartbeat_at) where status = 'running';
create index incomplete_cleanup_tasks_status_next_attempt_idx on bastion.incomplete_cleanup_tasks (status, next_attempt_at);
create index incomplete_cleanup_tasks_next_attempt_idx on bastion.incomplete_cleanup_tasks (next_attempt_at, run_id);
create index incomplete_cleanup_tasks_job_idx on bastion.incomplete_cleanup_tasks (job_id);
create index incomplete_cleanup_tasks_node_idx on bastion.incomplete_cleanup_tasks (node_id);
comment on table bastion.incomplete_cleanup_tasks is 'The incomplete-cleanup queue (seed 004): one task per run that never completed, removing its partial data from the target. The truth an operator reads; graphile-worker only delivers attempts at next_attempt_at.';
comment on column bastion.incomplete_cleanup_tasks.run_id is 'The run whose partial data is cleaned.';
comment on column bastion.incomplete_cleanup_tasks.job_id is 'The job of the run.';
comment on column bastion.incomplete_cleanup_tasks.node_id is 'Node the run executed on: holds the data (local_dir) or wrote it (webdav).';
comment on column bastion.incomplete_cleanup_tasks.target_type is 'local_dir or webdav.';
comment on column bastion.incomplete_cleanup_tasks.target_snapshot is 'Where the run wrote (no credentials): the run''s stored target snapshot, or one built from the job''s spec (see target_snapshot_source).';
comment on column bastion.incomplete_cleanup_tasks.target_snapshot_source is 'run: the location the run recorded at start; job_spec: the run had none (or an unusable one), so the job''s spec at reconcile time was used and saved onto the run.';
comment on column bastion.incomplete_cleanup_tasks.executor_node_id is 'Node that executes the attempts: node_id for local_dir, the hub for webdav.';
comment on column bastion.incomplete_cleanup_tasks.status is 'queued, running, retrying, blocked, done, ignored or abandoned (see type task_status).';
comment on column bastion.incomplete_cleanup_tasks.attempts is 'Attempts in the current cycle (counted when an attempt starts); reset by retry-now and unignore.';
comment on column bastion.incomplete_cleanup_tasks.created_at is 'When reconcile created the task.';
comment on column bastion.incomplete_cleanup_tasks.updated_at is 'Last state change (heartbeats excluded).';
comment on column bastion.incomplete_cleanup_tasks.cycle_started_at is 'Start of the current retry cycle (creation, retry-now, unignore); the 30-day abandon age counts from here.';
comment on column bastion.incomplete_cleanup_tasks.next_attempt_at is 'When the next attempt is due; set exactly while queued, retrying or blocked.';
comment on column bastion.incomplete_cleanup_tasks.last_attempt_at is 'Start of the last attempt.';
comment on column bastion.incomplete_cleanup_tasks.heartbeat_at is 'Last heartbeat of the running attempt; older than the watchdog''s threshold (40 s) means its worker died.';
comment on column bastion.incomplete_cleanup_tasks.claimed_by is 'graphile-worker pool id of the worker process running the attempt.';
comment on column bastion.incomplete_cleanup_tasks.last_error_kind is 'Kind of the last failure: network, io, auth, config, unknown or offline.';
comment on column bastion.incomplete_cleanup_tasks.last_error is 'Last failure: one line, no credentials, at most 500 bytes.';
comment on column bastion.incomplete_cleanup_tasks.outcome is 'How a done task ended: skip_complete (complete.json present; nothing deleted), skip_not_found (no run directory, or not Bastion data; nothing deleted), deleted.';
comment on column bastion.incomplete_cleanup_tasks.ignored_at is 'Set while ignored.';
comment on column bastion.incomplete_cleanup_tasks.ignored_by is 'User who ignored the task.';
comment on column bastion.incomplete_cleanup_tasks.ignore_reason is 'Why it was ignored (≤ 200 characters).';
comment on column bastion.incomplete_cleanup_tasks.event_seq is 'Highest incomplete_cleanup_events.seq of the task; bumped under the row lock, so event numbers have no gaps.';

create table bastion.incomplete_cleanup_events (
  run_id uuid not null references bastion.incomplete_cleanup_tasks (run_id) on delete cascade,
  seq integer not null constraint incomplete_cleanup_events_seq_positive check (seq > 0),
  ts timestamptz not null default now(),
  level bastion.event_level not null,
  -- A format check like artifact_delete_events, not a list: the generic queue
  -- functions and agent dispatch (0007: dispatched, and the agent's own
  -- start/progress events) write kinds of their own into every queue's log.
  kind text not null constraint incomplete_cleanup_events_kind_format check (kind ~ '^[a-z][a-z0-9_]{0,63}$'),
  message text not null constraint incomplete_cleanup_events_message_length check (char_length(message) <= 1000),
  fields jsonb constraint incomplete_cleanup_events_fields_object check (jsonb_typeof(fields) = 'object'),
  primary key (run_id, seq)
);
create index incomplete_cleanup_events_ts_idx on bastion.incomplete_cleanup_events (ts);
comment on table bastion.incomplete_cleanup_events is 'Append-only log of each cleanup task: the seed 004 kinds (attempt, skip_complete, skip_not_found, deleted, failed, blocked, abandoned, retry_now, ignored, unignored), plus queued at creation, released when a stopping worker gives a claim back, and the agent dispatch''s events.';
comment on column bastion.incomplete_cleanup_events.run_id is 'The task (run id).';
comment on column bastion.incomplete_cleanup_events.seq is '1, 2, 3, … per task, without gaps.';
comment on column bastion.incomplete_cleanup_events.ts is 'Event time.';
comment on column bastion.incomplete_cleanup_events.level is 'info, warn or error.';
comment on column bastion.incomplete_cleanup_events.kind is 'Machine-readable event kind: queued, attempt, skip_complete, skip_not_found, deleted, failed, blocked, abandoned, released, retry_now, ignored, unignored (and dispatched and agent events when an agent executes).';
comment on column bastion.incomplete_cleanup_events.message is 'Human-readable, credential-free message.';
comment on column bastion.incomplete_cleanup_events.fields is 'Details: attempt, duration_ms, http_status, url (redacted), path, error_kind, reason, hint, next_attempt_at, user_id, …';

create table bastion_private.incomplete_cleanup_skips (
  run_id uuid primary key references bastion.runs (id) on delete cascade,
  reason text not null constraint incomplete_cleanup_skips_reason_format check (reason ~ '^[a-z][a-z0-9_]{0,63}$'),
  message text not null constraint incomplete_cleanup_skips_message_length check (char_length(message) <= 1000),
  job_updated_at timestamptz not null,
  skipped_at timestamptz not null default now()
);
comment on table bastion_private.incomplete_cleanup_skips is 'Runs reconcile could not give a cleanup task (no usable target snapshot and no valid job spec to build one). They are not looked at again until their job changes.';
comment on column bastion_private.incomplete_cleanup_skips.run_id is 'The run.';
comment on column bastion_private.incomplete_cleanup_skips.reason is 'Stable reason (invalid_job_spec, invalid_target_snapshot, …).';
comment on column bastion_private.incomplete_cleanup_skips.message is 'What was wrong (no credentials: field names and zod messages only).';
comment on column bastion_private.incomplete_cleanup_skips.job_updated_at is 'jobs.updated_at when the run was skipped; a later edit of the job makes reconcile try the run again.';
comment on column bastion_private.incomplete_cleanup_skips.skipped_at is 'When reconcile last skipped the run.';

-- The candidate scan walks failed/canceled/rejected runs oldest first.
create index runs_incomplete_cleanup_idx on bastion.runs ((coalesce(started_at, created_at)), id) where status in ('failed', 'canceled', 'rejected');

-- ---------------------------------------------------------------------------
-- Queue side effects and creation

create function bastion_private.incomplete_cleanup_sync(p_run_ids uuid[]) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  -- The registry asks every queue for a sync function (the delete queue
  -- mirrors its tasks onto snapshots). A cleanup task has nothing to mirror:
  -- its run is finished history and no other row depends on the data that is
  -- removed, so the task and its events are the whole record.
  perform 1 where p_run_ids is not null;
end
$$;
comment on function bastion_private.incomplete_cleanup_sync(uuid[]) is 'Sync function of the incomplete-cleanup queue in bastion_private.task_queues: no side effects (the task and its events are the whole record).';

create function bastion_private.incomplete_cleanup_cutoff() returns timestamptz
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select case when s.incomplete_cleanup_days > 0 then now() - make_interval(days => s.incomplete_cleanup_days) end
    from bastion.settings s
$$;
comment on function bastion_private.incomplete_cleanup_cutoff() is 'Runs that started (or, never started, were created) before this time are cleaned up: now − settings.incomplete_cleanup_days; NULL when the setting is 0 (cleanup off).';

create function bastion_private.incomplete_cleanup_create(p_run_ids uuid[], p_snapshots jsonb[], p_source text) returns setof uuid
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_new uuid[];
begin
  -- Insert tasks that do not exist yet (a task is never reset: on conflict
  -- nothing happens), each with its first event, then schedule them.
  with ins as (
    insert into bastion.incomplete_cleanup_tasks (run_id, job_id, node_id, target_type, target_snapshot, target_snapshot_source, next_attempt_at, event_seq)
    select r.id, r.job_id, r.node_id, (x.snap -> 'target' ->> 'type')::bastion.target_type, x.snap, p_source, now(), 1
      from unnest(p_run_ids, p_snapshots) as x(run_id, snap)
      join bastion.runs r on r.id = x.run_id
     order by r.id
    on conflict (run_id) do nothing
    returning run_id
  ),
  ev as (
    insert into bastion.incomplete_cleanup_events (run_id, seq, level, kind, message, fields)
    select r.id, 1, 'info', 'queued',
           format('cleanup queued: the run %s %s and never completed', r.status,
                  case when r.started_at is null then 'before it started' else 'after it started' end),
           jsonb_strip_nulls(jsonb_build_object('run_status', r.status, 'run_error_code', r.error_code, 'run_started_at', r.started_at,
                                                'run_created_at', r.created_at, 'target_snapshot_source', p_source))
      from ins join bastion.runs r on r.id = ins.run_id
  )
  select coalesce(array_agg(run_id order by run_id), '{}') into v_new from ins;
  perform bastion_private.task_changed('incomplete_cleanup', v_new);
  return query select unnest(v_new);
end
$$;
comment on function bastion_private.incomplete_cleanup_create(uuid[], jsonb[], text) is 'Create cleanup tasks (queued, due now, with a queued event) for runs that have none, with the given target snapshots; existing tasks are left untouched. Returns the run ids that got a task.';

create function bastion_private.target_snapshot_usable(p_snapshot jsonb, p_node_id text) returns boolean
language plpgsql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  if p_snapshot is null then
    return false;
  end if;
  -- The one rule of 0003 (exact locating fields, no credentials, the run's node).
  perform bastion_private.check_target_snapshot(p_snapshot, p_node_id);
  return true;
exception when others then
  return false;
end
$$;
comment on function bastion_private.target_snapshot_usable(jsonb, text) is 'True when a stored target snapshot passes bastion_private.check_target_snapshot for the run''s node (false instead of an error).';

create function bastion_private.incomplete_cleanup_reconcile(p_limit integer default 200)
returns table (run_id uuid, job_id uuid, node_id text, outcome text, job_spec jsonb, stored_snapshot_invalid boolean)
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
#variable_conflict use_column
declare
  v_cutoff timestamptz := bastion_private.incomplete_cleanup_cutoff();
  v_ids uuid[];
  v_jobs uuid[];
  v_nodes text[];
  v_snaps jsonb[];
  v_usable boolean[];
  v_specs jsonb[];
  v_new uuid[];
begin
  if p_limit is null or p_limit < 1 or p_limit > 5000 then
    perform bastion_private.raise_error('invalid_input', 400, 'limit must be between 1 and 5000', jsonb_build_object('field', 'limit', 'reason', 'out_of_range'));
  end if;
  if v_cutoff is null then
    return; -- incomplete_cleanup_days = 0: cleanup is off
  end if;
  -- One batch of candidates, oldest first: final runs that did not succeed,
  -- old enough, without a task, not skipped since their job last changed
  -- (index runs_incomplete_cleanup_idx).
  select coalesce(array_agg(c.id order by c.id), '{}'), coalesce(array_agg(c.job_id order by c.id), '{}'),
         coalesce(array_agg(c.node_id order by c.id), '{}'), coalesce(array_agg(c.target_snapshot order by c.id), '{}'),
         coalesce(array_agg(bastion_private.target_snapshot_usable(c.target_snapshot, c.node_id) order by c.id), '{}'),
         coalesce(array_agg(c.spec order by c.id), '{}')
    into v_ids, v_jobs, v_nodes, v_snaps, v_usable, v_specs
    from (
      select r.id, r.job_id, r.node_id, r.target_snapshot, j.spec
        from bastion.runs r
        join bastion.jobs j on j.id = r.job_id
       where r.status in ('failed', 'canceled', 'rejected')
         and coalesce(r.started_at, r.created_at) < v_cutoff
         and not exists (select 1 from bastion.incomplete_cleanup_tasks t where t.run_id = r.id)
         and not exists (select 1 from bastion_private.incomplete_cleanup_skips s where s.run_id = r.id and s.job_updated_at = j.updated_at)
       order by coalesce(r.started_at, r.created_at), r.id
       limit p_limit
    ) c;

  select coalesce(array_agg(x.id), '{}') into v_new
    from bastion_private.incomplete_cleanup_create(
           array(select u.id from unnest(v_ids, v_usable) as u(id, ok) where u.ok),
           array(select u.snap from unnest(v_snaps, v_usable) as u(snap, ok) where u.ok),
           'run') as x(id);
  return query
    select u.id, u.job, u.node, 'enqueued'::text, null::jsonb, false
      from unnest(v_ids, v_jobs, v_nodes) as u(id, job, node)
     where u.id = any(v_new);
  -- The rest need a location built from the job's spec, which the worker
  -- validates with the same zod schemas as every other spec reader.
  return query
    select u.id, u.job, u.node, 'needs_snapshot'::text, u.spec, u.snap is not null
      from unnest(v_ids, v_jobs, v_nodes, v_snaps, v_usable, v_specs) as u(id, job, node, snap, ok, spec)
     where not u.ok;
end
$$;
comment on function bastion_private.incomplete_cleanup_reconcile(integer) is 'One reconcile batch (worker): up to p_limit eligible runs without a task, oldest first. Those with a usable stored target snapshot get a task (outcome enqueued); the others come back as needs_snapshot with the job''s spec, for the worker to build a location (incomplete_cleanup_enqueue) or skip the run (incomplete_cleanup_skip). Nothing when settings.incomplete_cleanup_days is 0.';

create function bastion_private.incomplete_cleanup_enqueue(p_run_id uuid, p_target_snapshot jsonb) returns text
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_run bastion.runs;
  v_cutoff timestamptz := bastion_private.incomplete_cleanup_cutoff();
  v_snapshot jsonb;
begin
  select * into v_run from bastion.runs r where r.id = p_run_id for update;
  if not found then
    return 'not_eligible';
  end if;
  if v_cutoff is null or v_run.status not in ('failed', 'canceled', 'rejected') or coalesce(v_run.started_at, v_run.created_at) >= v_cutoff then
    return 'not_eligible';
  end if;
  perform 1 from bastion.incomplete_cleanup_tasks t where t.run_id = p_run_id;
  if found then
    return 'exists';
  end if;
  perform bastion_private.check_target_snapshot(p_target_snapshot, v_run.node_id);
  -- Saved back onto the run when it had none, so the run shows where it was
  -- cleaned from; a stored (unusable) snapshot is kept as evidence.
  if v_run.target_snapshot is null then
    update bastion.runs r set target_snapshot = p_target_snapshot where r.id = p_run_id;
  end if;
  delete from bastion_private.incomplete_cleanup_skips s where s.run_id = p_run_id;
  perform bastion_private.incomplete_cleanup_create(array[p_run_id], array[p_target_snapshot], 'job_spec');
  return 'enqueued';
end
$$;
comment on function bastion_private.incomplete_cleanup_enqueue(uuid, jsonb) is 'Reconcile (worker): give an eligible run without a usable target snapshot its cleanup task, with a snapshot the worker built from the job''s spec (validated by check_target_snapshot; saved onto the run when it had none). Returns enqueued, exists or not_eligible.';

create function bastion_private.incomplete_cleanup_skip(p_run_id uuid, p_reason text, p_message text) returns boolean
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  insert into bastion_private.incomplete_cleanup_skips as s (run_id, reason, message, job_updated_at)
  select r.id, p_reason, left(bastion_private.task_clean_error(coalesce(p_message, p_reason), 1000), 1000), j.updated_at
    from bastion.runs r join bastion.jobs j on j.id = r.job_id
   where r.id = p_run_id
  on conflict (run_id) do update set reason = excluded.reason, message = excluded.message, job_updated_at = excluded.job_updated_at, skipped_at = now();
  return found;
end
$$;
comment on function bastion_private.incomplete_cleanup_skip(uuid, text, text) is 'Reconcile (worker): record that a run cannot be cleaned (no usable location); it is not considered again until its job changes. False when the run is gone.';

-- ---------------------------------------------------------------------------
-- Operator actions and the setting

create function bastion.retry_incomplete_cleanup_now(run_id uuid) returns bastion.incomplete_cleanup_tasks
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return jsonb_populate_record(null::bastion.incomplete_cleanup_tasks, bastion_private.task_retry_now('incomplete_cleanup', $1));
end
$$;
comment on function bastion.retry_incomplete_cleanup_now(uuid) is 'Retry a cleanup now with a fresh attempt budget: from retrying, blocked, ignored or abandoned (409 task_running, 409 not_retryable; 404 cleanup_task_not_found). A worker picks it up at once.';

create function bastion.ignore_incomplete_cleanup(run_id uuid, reason text default null) returns bastion.incomplete_cleanup_tasks
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return jsonb_populate_record(null::bastion.incomplete_cleanup_tasks, bastion_private.task_ignore('incomplete_cleanup', $1, $2));
end
$$;
comment on function bastion.ignore_incomplete_cleanup(uuid, text) is 'Stop cleaning a run (reason cut to 200 characters): its partial data stays. 409 task_running, 409 not_ignorable when done; 404 cleanup_task_not_found.';

create function bastion.unignore_incomplete_cleanup(run_id uuid) returns bastion.incomplete_cleanup_tasks
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
begin
  return jsonb_populate_record(null::bastion.incomplete_cleanup_tasks, bastion_private.task_unignore('incomplete_cleanup', $1));
end
$$;
comment on function bastion.unignore_incomplete_cleanup(uuid) is 'Put an ignored cleanup back in the queue, due now, with a fresh attempt budget (409 not_ignored; 404 cleanup_task_not_found).';

create function bastion.set_incomplete_cleanup_days(days integer) returns bastion.settings
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.settings;
begin
  if $1 is null or $1 < 0 or $1 > 3650 then
    perform bastion_private.raise_error('invalid_input', 400, 'days must be between 0 (cleanup off) and 3650',
      jsonb_build_object('field', 'days', 'reason', 'out_of_range', 'min', 0, 'max', 3650));
  end if;
  update bastion.settings s set incomplete_cleanup_days = $1, updated_at = now(), updated_by = bastion_private.current_user_id()
  returning * into v;
  return v;
end
$$;
comment on function bastion.set_incomplete_cleanup_days(integer) is 'Admin: clean up runs that never completed after this many days (0 turns incomplete cleanup off; existing tasks keep running). 400 invalid_input outside 0–3650.';

-- ---------------------------------------------------------------------------
-- Change notifications (topic bastion:run:<run_id>:cleanup; see 0002)

create trigger incomplete_cleanup_tasks_notify after insert or delete on bastion.incomplete_cleanup_tasks
  for each row execute function bastion_private.notify_change('run', 'run_id', 'cleanup', 'status');
-- Heartbeats (every 10 s per running task) change neither status nor updated_at and stay silent.
create trigger incomplete_cleanup_tasks_notify_update after update on bastion.incomplete_cleanup_tasks
  for each row when (old.status is distinct from new.status or old.updated_at is distinct from new.updated_at)
  execute function bastion_private.notify_change('run', 'run_id', 'cleanup', 'status');
create trigger incomplete_cleanup_events_notify after insert on bastion.incomplete_cleanup_events
  for each row execute function bastion_private.notify_change('run', 'run_id', 'cleanup', 'seq', 'kind');

-- ---------------------------------------------------------------------------
-- Registration, row-level security, grants

insert into bastion_private.task_queues (name, task_table, event_table, task_identifier, sync_function, not_found_code)
values ('incomplete_cleanup', 'bastion.incomplete_cleanup_tasks', 'bastion.incomplete_cleanup_events', 'incomplete-cleanup',
        'bastion_private.incomplete_cleanup_sync(uuid[])', 'cleanup_task_not_found');

alter table bastion.incomplete_cleanup_tasks enable row level security;
alter table bastion.incomplete_cleanup_events enable row level security;
grant select on bastion.incomplete_cleanup_tasks, bastion.incomplete_cleanup_events to bastion_viewer;
create policy incomplete_cleanup_tasks_select on bastion.incomplete_cleanup_tasks for select to bastion_viewer using (true);
create policy incomplete_cleanup_events_select on bastion.incomplete_cleanup_events for select to bastion_viewer using (true);

-- Operators retry and ignore (like the delete queue); the setting is hub
-- configuration (admins). Reconcile, enqueue, skip and the generic worker
-- functions are granted to no application role: workers connect as the owner.
grant execute on function bastion.retry_incomplete_cleanup_now(uuid) to bastion_operator;
grant execute on function bastion.ignore_incomplete_cleanup(uuid, text) to bastion_operator;
grant execute on function bastion.unignore_incomplete_cleanup(uuid) to bastion_operator;
grant execute on function bastion.set_incomplete_cleanup_days(integer) to bastion_admin;
