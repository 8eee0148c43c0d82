-- 0005_retention: retention policies enforced by the server (issue 5, DESIGN §7).
--
-- Which snapshots a policy deletes is decided by ONE pure function in
-- TypeScript (core/retention-select.ts), shared by preview, apply and the
-- tick. What lives here is what must hold whoever calls and however many
-- processes call at once:
--
-- * Policies: bastion.set_job_retention (a job's own policy, or NULL to
--   inherit), bastion.set_default_retention (the hub default every inheriting
--   job follows), bastion.set_retention_schedule (when the tick runs). Each
--   checks the policy's shape and bounds and names the field
--   (bastion_private.check_retention_policy mirrors the zod schema of
--   core/retention-policy.ts; a test compares both on hostile inputs).
-- * The ledger bastion.retention_enqueues: one row per snapshot retention put
--   in the delete queue, with the hash of the policy that chose it
--   (bastion.retention_policies resolves the hash to the policy). The per-day
--   limit counts these rows. They are not tied to the run (no foreign key), so
--   run-history pruning, which removes a deleted snapshot's run, task and
--   events, can neither make a day's count drop (and let retention delete past
--   max_delete_per_day) nor erase the answer to "which policy deleted this?".
-- * The atomic enqueue (bastion_private.retention_enqueue): inside the
--   caller's transaction and under a per-job advisory lock it recounts today's
--   enqueues, enqueues at most min(max_delete_per_tick, max_delete_per_day −
--   already) of the candidates through the delete queue's own request
--   function (bastion_private.enqueue_snapshot_deletes, reason `retention`,
--   never force), and re-checks each candidate: still present, not pinned (an
--   unexpired pin), not leased, not the job's newest unpinned present
--   snapshot, and never fewer than min_keep present unpinned snapshots left.
--   Two ticks, or an operator's apply racing a tick, therefore never exceed
--   the limits together. (A caller whose selection went stale meanwhile finds
--   its candidates already queued and enqueues less; never more.)
-- * Tick rounds (bastion.retention_job_state): the tick of one schedule slot
--   (a "round") processes each job once, so three worker processes ticking
--   the same slot do the job's per-tick share once, not three times.
--
-- Grants: viewers read policies, the ledger and tick state (preview reads
-- only); operators apply (bastion_private.retention_apply, called by the REST
-- route after the TypeScript selection); admins set job policies (like every
-- other job edit in 0003), the hub default and the schedule. The tick's batch
-- function is for workers (the schema owner) only.

-- ---------------------------------------------------------------------------
-- Settings: when the tick runs

alter table bastion.settings add column retention_schedule text not null default '0 * * * *'
  constraint settings_retention_schedule_shape check (
    char_length(retention_schedule) between 1 and 200
    and retention_schedule ~ '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*/,?#-]+( [0-9A-Za-z*/,?#-]+){4})$');
comment on column bastion.settings.retention_schedule is 'When the retention tick runs: a 5-field cron expression (or @hourly, @daily, …) evaluated in UTC; default hourly. Each slot is one round: every job with an enabled effective policy is processed once per round.';

-- ---------------------------------------------------------------------------
-- Policy checks

create function bastion_private.check_retention_policy(p_policy jsonb, p_field text default 'policy') returns void
language plpgsql immutable
set search_path = pg_catalog, pg_temp
as $$
declare
  v_key text;
  v jsonb;
  v_field text;
  v_num numeric;
  v_min integer;
  v_max integer;
  v_rule boolean := false;
  -- The counts of core/retention-policy.ts in its key order: name, min, max.
  v_counts constant text[] := array[
    'keep_last:0:10000', 'keep_days:0:3650', 'keep_hourly:0:10000', 'keep_daily:0:10000', 'keep_weekly:0:10000',
    'keep_monthly:0:10000', 'keep_yearly:0:10000', 'min_keep:0:10000', 'max_delete_per_tick:1:10000', 'max_delete_per_day:1:100000'];
  v_spec text;
  v_parts text[];
begin
  if p_policy is null or jsonb_typeof(p_policy) <> 'object' then
    perform bastion_private.raise_error('invalid_retention_policy', 400, p_field || ' must be a JSON object',
      jsonb_build_object('field', p_field, 'reason', 'not_object'));
  end if;
  if p_policy ? 'enabled' and jsonb_typeof(p_policy -> 'enabled') <> 'boolean' then
    perform bastion_private.raise_error('invalid_retention_policy', 400, p_field || '.enabled must be true or false',
      jsonb_build_object('field', p_field || '.enabled', 'reason', 'invalid_type'));
  end if;
  foreach v_spec in array v_counts loop
    v_parts := string_to_array(v_spec, ':');
    v_key := v_parts[1];
    v_min := v_parts[2]::integer;
    v_max := v_parts[3]::integer;
    v_field := p_field || '.' || v_key;
    continue when not p_policy ? v_key;
    v := p_policy -> v_key;
    if jsonb_typeof(v) <> 'number' then
      perform bastion_private.raise_error('invalid_retention_policy', 400, v_field || ' must be a number',
        jsonb_build_object('field', v_field, 'reason', 'invalid_type'));
    end if;
    v_num := (v #>> '{}')::numeric;
    if v_num < v_min or v_num > v_max then
      perform bastion_private.raise_error('invalid_retention_policy', 400, format('%s must be between %s and %s', v_field, v_min, v_max),
        jsonb_build_object('field', v_field, 'reason', 'out_of_range', 'min', v_min, 'max', v_max));
    end if;
    if v_num <> trunc(v_num) then
      perform bastion_private.raise_error('invalid_retention_policy', 400, v_field || ' must be a whole number',
        jsonb_build_object('field', v_field, 'reason', 'not_integer'));
    end if;
    if v_key like 'keep\_%' and v_num > 0 then
      v_rule := true;
    end if;
  end loop;
  if p_policy ? 'age_reference' then
    if jsonb_typeof(p_policy -> 'age_reference') <> 'string' then
      perform bastion_private.raise_error('invalid_retention_policy', 400, p_field || '.age_reference must be "now" or "newest"',
        jsonb_build_object('field', p_field || '.age_reference', 'reason', 'invalid_type'));
    end if;
    if p_policy ->> 'age_reference' not in ('now', 'newest') then
      perform bastion_private.raise_error('invalid_retention_policy', 400, p_field || '.age_reference must be "now" or "newest"',
        jsonb_build_object('field', p_field || '.age_reference', 'reason', 'unsupported_value'));
    end if;
  end if;
  select k into v_key from jsonb_object_keys(p_policy) k
   where k not in ('enabled', 'keep_last', 'keep_days', 'keep_hourly', 'keep_daily', 'keep_weekly', 'keep_monthly', 'keep_yearly',
                   'min_keep', 'age_reference', 'max_delete_per_tick', 'max_delete_per_day')
   order by k limit 1;
  if found then
    perform bastion_private.raise_error('invalid_retention_policy', 400, format('%s has an unknown key %s', p_field, pg_catalog.quote_literal(left(v_key, 64))),
      jsonb_build_object('field', p_field || '.' || left(v_key, 64), 'reason', 'unknown_field'));
  end if;
  if coalesce((p_policy ->> 'enabled')::boolean, false) and not v_rule then
    perform bastion_private.raise_error('invalid_retention_policy', 400,
      p_field || '.enabled: an enabled policy needs at least one keep rule (keep_last, keep_days or keep_hourly/daily/weekly/monthly/yearly)',
      jsonb_build_object('field', p_field || '.enabled', 'reason', 'keep_rule_required'));
  end if;
end
$$;
comment on function bastion_private.check_retention_policy(jsonb, text) is 'Raise invalid_retention_policy naming the field (p_field.key) and the reason (not_object, invalid_type, out_of_range with min/max, not_integer, unsupported_value, unknown_field, keep_rule_required) unless p_policy is a policy core/retention-policy.ts accepts; missing keys take their defaults.';

create function bastion_private.effective_retention(p_spec jsonb, p_default jsonb) returns jsonb
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  -- A job's own policy is used whole (never merged with the default): a job
  -- that set keep_last 3 must not silently gain the default's keep_days.
  select coalesce(nullif(p_spec -> 'retention', 'null'::jsonb), p_default)
$$;
comment on function bastion_private.effective_retention(jsonb, jsonb) is 'The policy in force for a job: spec.retention when set (not JSON null), else the hub default.';

create function bastion_private.retention_day_start(p_at timestamptz) returns timestamptz
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
  select date_trunc('day', p_at at time zone 'UTC') at time zone 'UTC'
$$;
comment on function bastion_private.retention_day_start(timestamptz) is '00:00 UTC of the day holding p_at: max_delete_per_day counts retention enqueues from here (core/retention-select.ts retentionDayStart).';

-- ---------------------------------------------------------------------------
-- What the selection reads: a job's present snapshots, newest first, with
-- the pin and size columns, from the index alone. Without it the tick read
-- each job's rows from heap pages scattered by insertion time (one page per
-- snapshot): 500 jobs × 100 snapshots took ≈ 300 ms per batch, most of it
-- random heap reads, against ≈ 140 ms for the whole plain scan per 500,000
-- rows of the anchor (bench/retention.ts).

create index run_artifacts_retention_idx on bastion.run_artifacts (job_id, ended_at desc, run_id desc)
  include (pinned_at, pin_expires_at, source_bytes, transfer_bytes)
  where status = 'present';
comment on index bastion.run_artifacts_retention_idx is 'Retention (sql/migrations/0005): a job''s present snapshots newest first with what the selection needs, for index-only scans.';

-- ---------------------------------------------------------------------------
-- Policies by hash, the ledger, tick state

create table bastion.retention_policies (
  policy_hash text primary key constraint retention_policies_hash_format check (policy_hash ~ '^[0-9a-f]{64}$'),
  policy jsonb not null constraint retention_policies_policy_object check (jsonb_typeof(policy) = 'object'),
  first_used_at timestamptz not null default now()
);
comment on table bastion.retention_policies is 'Every retention policy that has enqueued a delete, by its hash (core/retention-policy.ts policyHash: SHA-256 of the canonical JSON with defaults filled in), so a hash in an event or the ledger names an exact policy.';
comment on column bastion.retention_policies.policy_hash is 'Hex SHA-256 of the policy''s canonical JSON.';
comment on column bastion.retention_policies.policy is 'The policy, every default filled in.';
comment on column bastion.retention_policies.first_used_at is 'When this policy first enqueued a delete.';

create table bastion.retention_enqueues (
  id bigint generated always as identity primary key,
  job_id uuid not null references bastion.jobs (id) on delete cascade,
  run_id uuid not null,
  enqueued_at timestamptz not null default now(),
  policy_hash text not null references bastion.retention_policies (policy_hash),
  policy_source text not null constraint retention_enqueues_policy_source_values check (policy_source in ('job', 'hub_default', 'proposed')),
  trigger text not null constraint retention_enqueues_trigger_values check (trigger in ('tick', 'apply')),
  round_at timestamptz,
  requested_by uuid references bastion.users (id) on delete set null,
  constraint retention_enqueues_round_only_for_ticks check ((trigger = 'tick') = (round_at is not null))
);
create index retention_enqueues_job_day_idx on bastion.retention_enqueues (job_id, enqueued_at);
create index retention_enqueues_run_idx on bastion.retention_enqueues (run_id);
create index retention_enqueues_enqueued_at_idx on bastion.retention_enqueues (enqueued_at);
comment on table bastion.retention_enqueues is 'Ledger of retention deletes: one row each time retention put a snapshot in the delete queue. max_delete_per_day counts a job''s rows since 00:00 UTC. Not tied to the run, so it outlives run-history pruning; kept for settings.run_retention_days (at least 2 days).';
comment on column bastion.retention_enqueues.id is 'Row id.';
comment on column bastion.retention_enqueues.job_id is 'The job.';
comment on column bastion.retention_enqueues.run_id is 'The snapshot (its run id); no foreign key, so the row survives the run''s pruning.';
comment on column bastion.retention_enqueues.enqueued_at is 'When the delete was queued (transaction time).';
comment on column bastion.retention_enqueues.policy_hash is 'The policy that chose the snapshot (see retention_policies).';
comment on column bastion.retention_enqueues.policy_source is 'job (the job''s own policy), hub_default (inherited) or proposed (an operator applied a policy without saving it).';
comment on column bastion.retention_enqueues.trigger is 'tick (the scheduled task) or apply (an operator).';
comment on column bastion.retention_enqueues.round_at is 'For ticks: the schedule slot (round) of the tick.';
comment on column bastion.retention_enqueues.requested_by is 'The operator who applied (NULL for ticks).';

create table bastion.retention_job_state (
  job_id uuid primary key references bastion.jobs (id) on delete cascade,
  round_at timestamptz not null,
  ticked_at timestamptz not null default now(),
  policy_hash text constraint retention_job_state_hash_format check (policy_hash ~ '^[0-9a-f]{64}$'),
  policy_source text constraint retention_job_state_policy_source_values check (policy_source in ('job', 'hub_default')),
  snapshots integer not null default 0 constraint retention_job_state_snapshots_nonnegative check (snapshots >= 0),
  truncated boolean not null default false,
  enqueued integer not null default 0 constraint retention_job_state_enqueued_nonnegative check (enqueued >= 0),
  already_queued integer not null default 0 constraint retention_job_state_already_queued_nonnegative check (already_queued >= 0),
  skipped_by_limits integer not null default 0 constraint retention_job_state_skipped_by_limits_nonnegative check (skipped_by_limits >= 0),
  skipped integer not null default 0 constraint retention_job_state_skipped_nonnegative check (skipped >= 0),
  error_code text constraint retention_job_state_error_code_format check (error_code ~ '^[a-z][a-z0-9_]{0,63}$'),
  error text constraint retention_job_state_error_length check (octet_length(error) <= 500),
  constraint retention_job_state_error_pair check ((error_code is null) = (error is null))
);
comment on table bastion.retention_job_state is 'What the retention tick last did for each job: the round it processed (a job is processed once per round, however many workers tick) and its outcome.';
comment on column bastion.retention_job_state.job_id is 'The job.';
comment on column bastion.retention_job_state.round_at is 'The latest round (schedule slot of settings.retention_schedule) processed for this job.';
comment on column bastion.retention_job_state.ticked_at is 'When that round processed the job.';
comment on column bastion.retention_job_state.policy_hash is 'Hash of the effective policy used (NULL when it could not be read).';
comment on column bastion.retention_job_state.policy_source is 'job or hub_default.';
comment on column bastion.retention_job_state.snapshots is 'Present snapshots the selection saw.';
comment on column bastion.retention_job_state.truncated is 'The job had more present snapshots than one selection reads (100,000); the oldest were not considered.';
comment on column bastion.retention_job_state.enqueued is 'Deletes queued by that round.';
comment on column bastion.retention_job_state.already_queued is 'Candidates already being deleted.';
comment on column bastion.retention_job_state.skipped_by_limits is 'Candidates held back by max_delete_per_tick / max_delete_per_day.';
comment on column bastion.retention_job_state.skipped is 'Candidates the final re-check refused (pinned, leased, gone or the last snapshot meanwhile).';
comment on column bastion.retention_job_state.error_code is 'Why the job could not be processed (e.g. invalid_retention_policy, invalid_retention_time_zone), or NULL.';
comment on column bastion.retention_job_state.error is 'One-line description of that error (no credentials).';

-- ---------------------------------------------------------------------------
-- Setting policies

create function bastion.set_job_retention(job_id uuid, policy jsonb) returns bastion.jobs
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_job bastion.jobs;
  v_policy jsonb := nullif(set_job_retention.policy, 'null'::jsonb);
begin
  select * into v_job from bastion.jobs j where j.id = set_job_retention.job_id for update;
  if not found then
    perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', set_job_retention.job_id));
  end if;
  if v_job.archived_at is not null then
    perform bastion_private.raise_error('job_archived', 409, 'the job is archived; unarchive it before editing', jsonb_build_object('job_id', set_job_retention.job_id));
  end if;
  if v_policy is not null then
    perform bastion_private.check_retention_policy(v_policy, 'policy');
  end if;
  update bastion.jobs j
     set spec = jsonb_set(j.spec, '{retention}', coalesce(v_policy, 'null'::jsonb)),
         updated_at = greatest(now(), j.updated_at + interval '1 millisecond')
   where j.id = set_job_retention.job_id
  returning * into v_job;
  return v_job;
end
$$;
comment on function bastion.set_job_retention(uuid, jsonb) is 'Set a job''s retention policy (spec.retention; admin, like every job edit). NULL inherits the hub default. Errors: job_not_found, job_archived, invalid_retention_policy naming the field (policy.keep_last, …). Clients validate with core/retention-policy.ts first and store every default filled in.';

create function bastion.set_default_retention(policy jsonb) returns bastion.settings
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.settings;
begin
  perform bastion_private.check_retention_policy(set_default_retention.policy, 'policy');
  update bastion.settings s
     set default_retention = set_default_retention.policy, updated_at = now(), updated_by = bastion_private.current_user_id()
  returning * into v;
  return v;
end
$$;
comment on function bastion.set_default_retention(jsonb) is 'Set the hub default retention policy (admin): every job whose spec.retention is null follows it from the next preview, apply or tick. invalid_retention_policy names the field.';

create function bastion.set_retention_schedule(schedule text) returns bastion.settings
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v bastion.settings;
begin
  if set_retention_schedule.schedule is null or char_length(set_retention_schedule.schedule) not between 1 and 200
     or set_retention_schedule.schedule !~ '^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|[0-9A-Za-z*/,?#-]+( [0-9A-Za-z*/,?#-]+){4})$' then
    perform bastion_private.raise_error('invalid_schedule', 400, 'schedule must be 5 cron fields separated by single spaces, or @yearly, @monthly, @weekly, @daily, @hourly',
      jsonb_build_object('field', 'schedule', 'reason', 'shape'));
  end if;
  update bastion.settings s
     set retention_schedule = set_retention_schedule.schedule, updated_at = now(), updated_by = bastion_private.current_user_id()
  returning * into v;
  return v;
end
$$;
comment on function bastion.set_retention_schedule(text) is 'Set when the retention tick runs (admin): 5-field cron in UTC or a nickname. The shape is checked here; clients check the fields with core/cron-schedule.ts first.';

-- ---------------------------------------------------------------------------
-- The atomic enqueue
--
-- One function serves apply (one job) and the tick (a batch of jobs), so the
-- rules are written once. It is set-based: a batch of jobs costs a handful of
-- statements plus one call of the delete queue's request function per policy
-- and 1000 snapshots to delete, whatever the number of jobs. Statements over
-- tables that grow while a tick runs (the ledger) are planned per call
-- (EXECUTE): a cached plan made while they were nearly empty would scan them
-- whole for every batch (measured: a 1,000-job tick went from 1.1 s to 9 s of
-- writes that way on freshly loaded tables).

create function bastion_private.retention_enqueue_jobs(p_items jsonb, p_trigger text, p_round_at timestamptz) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_day_start timestamptz := bastion_private.retention_day_start(now());
  v_policy jsonb;
  v_bad text;
  v_job uuid;
  v_ids uuid[];
  v_all uuid[];
  v_grp record;
  v_fields jsonb;
  v_results jsonb[] := '{}';
  v_done uuid[] := '{}';
  i integer;
begin
  -- The limits rest on seeing what concurrent callers committed; a snapshot
  -- frozen for the whole transaction would count stale rows.
  if current_setting('transaction_isolation') <> 'read committed' then
    perform bastion_private.raise_error('invalid_input', 400, 'retention enqueues must run at READ COMMITTED isolation',
      jsonb_build_object('field', 'transaction_isolation', 'reason', 'unsupported'));
  end if;
  if p_trigger is null or p_trigger not in ('tick', 'apply') or (p_trigger = 'tick') <> (p_round_at is not null) then
    perform bastion_private.raise_error('invalid_input', 400, 'trigger must be tick (with a round) or apply (without)', jsonb_build_object('field', 'trigger'));
  end if;
  if p_items is null or jsonb_typeof(p_items) <> 'array' or jsonb_array_length(p_items) > 10000 then
    perform bastion_private.raise_error('invalid_input', 400, 'items must be a JSON array of at most 10000 jobs', jsonb_build_object('field', 'items'));
  end if;

  create temporary table if not exists retention_items (
    job_id uuid primary key, policy jsonb, policy_hash text, policy_source text, expected_policy jsonb, run_ids uuid[], status text,
    per_tick integer, per_day integer, min_keep integer, already integer, allowed integer,
    snapshots integer, truncated boolean, selection_skipped integer,
    take uuid[], limited uuid[], queued uuid[], skipped jsonb, enqueued uuid[]
  ) on commit drop;
  truncate retention_items;
  begin
    insert into retention_items (job_id, policy, policy_hash, policy_source, expected_policy, run_ids, snapshots, truncated, selection_skipped)
    select x.job_id, x.policy, x.policy_hash, x.policy_source, nullif(x.expected_policy, 'null'::jsonb),
           (select coalesce(array_agg(distinct r order by r), '{}') from unnest(coalesce(x.run_ids, '{}')) r where r is not null),
           greatest(coalesce(x.snapshots, 0), 0), coalesce(x.truncated, false), greatest(coalesce(x.skipped_by_limits, 0), 0)
      from jsonb_to_recordset(p_items) as x(job_id uuid, policy jsonb, policy_hash text, policy_source text, expected_policy jsonb, run_ids uuid[],
                                           snapshots integer, truncated boolean, skipped_by_limits integer);
  exception
    when unique_violation then
      perform bastion_private.raise_error('invalid_input', 400, 'items name a job twice', jsonb_build_object('field', 'items', 'reason', 'duplicate_job'));
    when invalid_text_representation or invalid_parameter_value or datatype_mismatch then
      perform bastion_private.raise_error('invalid_input', 400, 'items must be [{job_id, policy, policy_hash, policy_source, expected_policy, run_ids}]',
        jsonb_build_object('field', 'items', 'reason', 'shape'));
  end;
  select format('job %s: %s', job_id, case
           when job_id is null then 'job_id is required'
           when policy_hash is null or policy_hash !~ '^[0-9a-f]{64}$' then 'policy_hash must be 64 hex digits (core/retention-policy.ts policyHash)'
           when policy_source is null or policy_source not in ('job', 'hub_default', 'proposed') or (p_trigger = 'tick' and policy_source = 'proposed')
             then 'policy_source must be job or hub_default (or proposed for apply)'
           else 'at most 10000 candidates (max_delete_per_tick) per job' end)
    into v_bad
    from retention_items
   where job_id is null or policy_hash is null or policy_hash !~ '^[0-9a-f]{64}$' or policy_source is null
      or policy_source not in ('job', 'hub_default', 'proposed') or (p_trigger = 'tick' and policy_source = 'proposed')
      or cardinality(run_ids) > 10000
   limit 1;
  if v_bad is not null then
    perform bastion_private.raise_error('invalid_input', 400, v_bad, jsonb_build_object('field', 'items'));
  end if;
  for v_policy in select distinct policy from retention_items loop
    perform bastion_private.check_retention_policy(v_policy, 'policy');
    if not coalesce((v_policy ->> 'enabled')::boolean, false) then
      perform bastion_private.raise_error('retention_disabled', 400, 'the policy is disabled; nothing is deleted', jsonb_build_object('field', 'policy.enabled', 'reason', 'disabled'));
    end if;
  end loop;
  update retention_items
     set per_tick = coalesce((policy ->> 'max_delete_per_tick')::integer, 50),
         per_day = coalesce((policy ->> 'max_delete_per_day')::integer, 200),
         min_keep = coalesce((policy ->> 'min_keep')::integer, 0);

  -- One retention writer per job at a time (ticks of every worker, applies),
  -- until commit; jobs in id order so two batches never deadlock. Then the
  -- job rows (shared, as the delete request takes them). A tick's jobs with
  -- no candidate enqueue nothing and only have their round recorded: they
  -- take no lock (most jobs, most rounds).
  select coalesce(array_agg(job_id order by job_id), '{}') into v_ids from retention_items where cardinality(run_ids) > 0 or p_trigger = 'apply';
  foreach v_job in array v_ids loop
    perform pg_advisory_xact_lock(hashtext('bastion.retention'), hashtext(v_job::text));
  end loop;
  perform 1 from bastion.jobs j where j.id = any(v_ids) order by j.id for share;
  -- Who proceeds: the job exists and is not archived; a tick has not done it
  -- in this round (or a later one); the policy the caller selected with is
  -- still the job's (an admin may have changed it, or the hub default).
  update retention_items it
     set status = case
           when j.id is null then 'not_found'
           when j.archived_at is not null then 'archived'
           when p_trigger = 'tick' and st.round_at >= p_round_at then 'already_ticked'
           when it.expected_policy is not null
                and bastion_private.effective_retention(j.spec, s.default_retention) is distinct from it.expected_policy then 'policy_changed'
           else 'go' end
    from retention_items i2
    left join bastion.jobs j on j.id = i2.job_id
    left join bastion.retention_job_state st on st.job_id = i2.job_id
    cross join bastion.settings s
   where i2.job_id = it.job_id;

  -- Today's retention enqueues per job, then what each may still enqueue.
  execute $q$
    update retention_items it
       set already = coalesce((select count(*) from bastion.retention_enqueues e where e.job_id = it.job_id and e.enqueued_at >= $1), 0)
     where it.status = 'go' and (cardinality(it.run_ids) > 0 or $2)$q$
  using v_day_start, p_trigger = 'apply';
  update retention_items set allowed = greatest(0, least(per_tick, per_day - coalesce(already, 0))) where status = 'go';

  -- Re-check every candidate under its row lock (pins and leases lock the
  -- same rows, so neither can slip in before commit), in run id order as the
  -- delete request locks them, and after their delete tasks (if any), as
  -- every queue transition does (sql/migrations/0004): tasks, then snapshots.
  select coalesce(array_agg(r order by r), '{}') into v_all from retention_items it, unnest(it.run_ids) r where it.status = 'go';
  perform 1 from bastion.artifact_delete_tasks t where t.run_id = any(v_all) order by t.run_id for update;
  perform 1 from bastion.run_artifacts a where a.run_id = any(v_all) order by a.run_id for update;
  -- min_keep is a floor on what remains: a selection made before a
  -- concurrent manual delete must not take the job below it.
  update retention_items it
     set allowed = least(it.allowed, greatest(0, (
           select count(*) from bastion.run_artifacts a
            where a.job_id = it.job_id and a.status = 'present'
              and not (a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now()))) - it.min_keep))
   where it.status = 'go' and it.min_keep > 0 and cardinality(it.run_ids) > 0;

  -- Per job: the oldest `allowed` candidates that pass, the rest held back,
  -- those already being deleted, and the refusals with their reason. The
  -- newest unpinned present snapshot is never taken (last_snapshot).
  with cand as (
    select it.job_id, r as run_id from retention_items it, unnest(it.run_ids) r where it.status = 'go'
  ),
  newest as (
    select it.job_id, (select a.run_id from bastion.run_artifacts a
                        where a.job_id = it.job_id and a.status = 'present'
                          and not (a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now()))
                        order by a.ended_at desc, a.run_id desc limit 1) as run_id
      from retention_items it where it.status = 'go' and cardinality(it.run_ids) > 0
  ),
  c as (
    select cand.job_id, cand.run_id, a.ended_at,
           case
             when a.run_id is null then 'not_in_job'
             when a.status = 'deleting' then 'already_queued'
             when a.status <> 'present' then 'not_present'
             when a.pinned_at is not null and (a.pin_expires_at is null or a.pin_expires_at > now()) then 'pinned'
             when exists (select 1 from bastion.snapshot_leases l where l.run_id = a.run_id and l.expires_at > now()) then 'leased'
             when a.run_id = n.run_id then 'last_snapshot'
           end as refusal
      from cand
      -- lateral: one index probe per candidate, whatever the planner guesses about the batch
      left join lateral (select a.* from bastion.run_artifacts a where a.run_id = cand.run_id and a.job_id = cand.job_id) a on true
      left join newest n on n.job_id = cand.job_id
  ),
  ok as (
    -- Oldest first: the limits cut the newest candidates (core/retention-select.ts).
    select c.job_id, c.run_id, row_number() over (partition by c.job_id order by c.ended_at, c.run_id) as n from c where c.refusal is null
  ),
  agg as (
    select c.job_id,
           array_agg(c.run_id order by c.run_id) filter (where c.refusal is null and ok.n <= it.allowed) as take,
           array_agg(c.run_id order by c.run_id) filter (where c.refusal is null and ok.n > it.allowed) as limited,
           array_agg(c.run_id order by c.run_id) filter (where c.refusal = 'already_queued') as queued,
           jsonb_agg(jsonb_build_object('run_id', c.run_id, 'reason', c.refusal) order by c.run_id)
             filter (where c.refusal is not null and c.refusal <> 'already_queued') as skipped
      from c
      join retention_items it on it.job_id = c.job_id
      left join ok on ok.job_id = c.job_id and ok.run_id = c.run_id
     group by c.job_id
  )
  update retention_items it
     set take = coalesce(agg.take, '{}'), limited = coalesce(agg.limited, '{}'), queued = coalesce(agg.queued, '{}'),
         skipped = coalesce(agg.skipped, '[]')
    from retention_items i2
    left join agg on agg.job_id = i2.job_id
   where i2.job_id = it.job_id and i2.status = 'go';

  -- Through the delete queue's one request function (reason retention, never
  -- force), one call per policy and 1000 snapshots of any number of jobs
  -- (p_job_id NULL: each snapshot's own job, whose row this function already
  -- locked). The call writes the policy into the queued/requeued event, so
  -- the task's own log answers "which policy deleted this?". One call per job
  -- cost ~1.1–1.7 ms whatever its size: 16.8 s of a 22.5 s tick over 10,000
  -- jobs (bench/retention.ts). No subtransaction per job: more than 64 in one
  -- transaction overflow PostgreSQL's subtransaction cache and slow every
  -- concurrent reader; a tick whose batch fails retries it job by job instead
  -- (engine/retention/retention-tick.ts).
  for v_grp in
    select it.policy_hash, it.policy_source, array_agg(r order by r) as ids
      from retention_items it, unnest(it.take) r
     where it.status = 'go'
     group by it.policy_hash, it.policy_source
     order by it.policy_hash, it.policy_source
  loop
    v_fields := jsonb_build_object('policy_hash', v_grp.policy_hash, 'policy_source', v_grp.policy_source, 'trigger', p_trigger, 'round_at', p_round_at);
    i := 1;
    while i <= cardinality(v_grp.ids) loop
      v_done := v_done || array(
        select r.run_id from bastion_private.enqueue_snapshot_deletes(null, v_grp.ids[i:i + 999], false, 'retention', bastion_private.current_user_id(),
                                                                      'delete queued (retention)', v_fields) r
         where r.outcome in ('enqueued', 'requeued'));
      i := i + 1000;
    end loop;
  end loop;
  update retention_items it
     set enqueued = d.ids
    from (select i2.job_id, array_agg(x order by x) as ids
            from retention_items i2 cross join unnest(i2.take) x join unnest(v_done) y on y = x
           where i2.status = 'go'
           group by i2.job_id) d
   where d.job_id = it.job_id;

  if cardinality(v_done) > 0 then
    insert into bastion.retention_policies (policy_hash, policy)
    select distinct on (it.policy_hash) it.policy_hash, it.policy
      from retention_items it where it.status = 'go' and cardinality(it.enqueued) > 0
    on conflict (policy_hash) do nothing;
    insert into bastion.retention_enqueues (job_id, run_id, policy_hash, policy_source, trigger, round_at, requested_by)
    select it.job_id, x, it.policy_hash, it.policy_source, p_trigger, p_round_at, bastion_private.current_user_id()
      from retention_items it, unnest(it.enqueued) x
     where it.status = 'go';
  end if;

  -- One result per job, in job id order. Nothing to do (most jobs, most
  -- rounds): a short result.
  select coalesce(array_agg(case
           when it.status <> 'go' then jsonb_build_object('job_id', it.job_id, 'status', it.status)
           when p_trigger = 'tick' and cardinality(it.take) = 0 and cardinality(it.queued) = 0 and cardinality(it.limited) = 0 and it.skipped = '[]'::jsonb
             then jsonb_build_object('job_id', it.job_id, 'status', 'done')
           else jsonb_build_object(
             'job_id', it.job_id, 'status', 'done',
             'enqueued', to_jsonb(coalesce(it.enqueued, '{}')), 'already_queued', to_jsonb(it.queued), 'skipped_by_limits', to_jsonb(it.limited),
             'skipped', it.skipped, 'already_enqueued_today', it.already, 'allowed', it.allowed, 'day_start', v_day_start)
         end order by it.job_id), '{}')
    into v_results
    from retention_items it;

  if p_trigger = 'tick' then
    -- What this round did, for every job it processed.
    insert into bastion.retention_job_state as s (job_id, round_at, ticked_at, policy_hash, policy_source, snapshots, truncated,
                                                  enqueued, already_queued, skipped_by_limits, skipped, error_code, error)
    select it.job_id, p_round_at, now(), it.policy_hash, it.policy_source, it.snapshots, it.truncated,
           coalesce(jsonb_array_length(r.v -> 'enqueued'), 0), coalesce(jsonb_array_length(r.v -> 'already_queued'), 0),
           it.selection_skipped + coalesce(jsonb_array_length(r.v -> 'skipped_by_limits'), 0), coalesce(jsonb_array_length(r.v -> 'skipped'), 0),
           null, null
      from unnest(v_results) as r(v)
      join retention_items it on it.job_id = (r.v ->> 'job_id')::uuid
     where r.v ->> 'status' = 'done'
    on conflict (job_id) do update
      set round_at = greatest(s.round_at, excluded.round_at), ticked_at = excluded.ticked_at, policy_hash = excluded.policy_hash,
          policy_source = excluded.policy_source, snapshots = excluded.snapshots, truncated = excluded.truncated,
          enqueued = excluded.enqueued, already_queued = excluded.already_queued, skipped_by_limits = excluded.skipped_by_limits,
          skipped = excluded.skipped, error_code = null, error = null;
  end if;
  return to_jsonb(v_results);
end
$$;
comment on function bastion_private.retention_enqueue_jobs(jsonb, text, timestamptz) is 'Queue retention deletes of a batch of jobs atomically (items [{job_id, policy, policy_hash, policy_source, expected_policy, run_ids}]): under each job''s advisory lock (job id order), skip jobs gone, archived, already done in this tick round, or whose effective policy is no longer expected_policy; recount today''s retention enqueues; re-check each candidate under its row lock (present, unpinned, unleased, not the newest unpinned present snapshot); enqueue the oldest min(max_delete_per_tick, max_delete_per_day − already, present unpinned − min_keep) through enqueue_snapshot_deletes (reason retention), recording each in retention_enqueues and the policy hash in its queued event. Returns one result per job {status: done | not_found | archived | already_ticked | policy_changed | error, enqueued, already_queued, skipped_by_limits, skipped: [{run_id, reason}], already_enqueued_today, allowed, day_start}.';

create function bastion_private.retention_apply(job_id uuid, policy jsonb, policy_hash text, policy_source text, run_ids uuid[], expected_policy jsonb)
returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v jsonb;
begin
  v := bastion_private.retention_enqueue_jobs(
         jsonb_build_array(jsonb_build_object('job_id', $1, 'policy', $2, 'policy_hash', $3, 'policy_source', $4,
                                              'run_ids', to_jsonb(coalesce($5, '{}'::uuid[])), 'expected_policy', $6)),
         'apply', null) -> 0;
  case v ->> 'status'
    when 'not_found' then
      perform bastion_private.raise_error('job_not_found', 404, 'job not found', jsonb_build_object('job_id', $1));
    when 'archived' then
      perform bastion_private.raise_error('job_archived', 409, 'the job is archived; retention does not apply to it (archive with cascade deletes its snapshots)',
        jsonb_build_object('job_id', $1));
    when 'policy_changed' then
      perform bastion_private.raise_error('retention_policy_changed', 409, 'the job''s retention policy changed since it was read; preview again',
        jsonb_build_object('job_id', $1));
    else
      return v;
  end case;
  return v;
end
$$;
comment on function bastion_private.retention_apply(uuid, jsonb, text, text, uuid[], jsonb) is 'An operator''s retention apply (after the TypeScript selection, engine/retention): retention_enqueue_jobs for one job with trigger apply. expected_policy NULL for a proposed (unsaved) policy, else the saved effective policy as read. Errors: job_not_found, job_archived, retention_policy_changed, retention_disabled, invalid_retention_policy, invalid_input.';

create function bastion_private.retention_tick_jobs(p_round_at timestamptz, p_items jsonb) returns jsonb
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_results jsonb;
begin
  if p_round_at is null then
    perform bastion_private.raise_error('invalid_input', 400, 'round_at is required', jsonb_build_object('field', 'round_at'));
  end if;
  if p_items is null or jsonb_typeof(p_items) <> 'array' then
    perform bastion_private.raise_error('invalid_input', 400, 'items must be a JSON array', jsonb_build_object('field', 'items'));
  end if;
  v_results := bastion_private.retention_enqueue_jobs(
    coalesce((select jsonb_agg(x) from jsonb_array_elements(p_items) x where not x ? 'error_code'), '[]'), 'tick', p_round_at);
  -- Jobs whose selection could not run in TypeScript (an invalid stored
  -- policy, an unknown time zone) are recorded with their error.
  v_results := v_results || coalesce((
    select jsonb_agg(jsonb_build_object('job_id', x ->> 'job_id', 'status', 'error', 'error_code', x ->> 'error_code',
                                        'error', bastion_private.task_clean_error(x ->> 'error', 500)))
      from jsonb_array_elements(p_items) x where x ? 'error_code'), '[]');
  -- Errors are recorded for the round too (the next round tries again).
  insert into bastion.retention_job_state as s (job_id, round_at, ticked_at, snapshots, truncated, error_code, error)
  select (x ->> 'job_id')::uuid, p_round_at, now(), greatest(coalesce((x ->> 'snapshots')::integer, 0), 0), coalesce((x ->> 'truncated')::boolean, false),
         case when x ->> 'error_code' ~ '^[a-z][a-z0-9_]{0,63}$' then x ->> 'error_code' else 'internal_error' end,
         coalesce(bastion_private.task_clean_error(x ->> 'error', 500), 'error')
    from jsonb_array_elements(p_items) x
   where x ? 'error_code' and exists (select 1 from bastion.jobs j where j.id = (x ->> 'job_id')::uuid)
  on conflict (job_id) do update
    set round_at = greatest(s.round_at, excluded.round_at), ticked_at = excluded.ticked_at, snapshots = excluded.snapshots,
        truncated = excluded.truncated, enqueued = 0, already_queued = 0, skipped_by_limits = 0, skipped = 0,
        error_code = excluded.error_code, error = excluded.error;
  return v_results;
end
$$;
comment on function bastion_private.retention_tick_jobs(timestamptz, jsonb) is 'The tick''s write for a batch of jobs (workers only): retention_enqueue_jobs with trigger tick for round p_round_at over the items [{job_id, policy, policy_hash, policy_source, expected_policy, run_ids, snapshots, truncated, skipped_by_limits}], plus items {job_id, error_code, error} whose selection failed; then the retention_job_state of every job processed (done or error). Jobs already processed in this round, archived, or whose policy changed are left for later. Returns one result per job.';

create function bastion_private.retention_prune_ledger(p_batch integer default 10000) returns integer
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_days integer;
  v integer;
begin
  select greatest(run_retention_days, 2) into v_days from bastion.settings;
  delete from bastion.retention_enqueues e
   where e.id in (select e2.id from bastion.retention_enqueues e2
                   where e2.enqueued_at < now() - make_interval(days => v_days)
                   order by e2.enqueued_at limit greatest(coalesce(p_batch, 10000), 1));
  get diagnostics v = row_count;
  return v;
end
$$;
comment on function bastion_private.retention_prune_ledger(integer) is 'Delete up to p_batch ledger rows older than settings.run_retention_days (at least 2 days, so today''s count is never touched); every tick calls it. Returns how many went.';

-- ---------------------------------------------------------------------------
-- Row-level security, grants

alter table bastion.retention_policies enable row level security;
alter table bastion.retention_enqueues enable row level security;
alter table bastion.retention_job_state enable row level security;
grant select on bastion.retention_policies, bastion.retention_enqueues, bastion.retention_job_state to bastion_viewer;
create policy retention_policies_select on bastion.retention_policies for select to bastion_viewer using (true);
create policy retention_enqueues_select on bastion.retention_enqueues for select to bastion_viewer using (true);
create policy retention_job_state_select on bastion.retention_job_state for select to bastion_viewer using (true);

grant execute on function bastion.set_job_retention(uuid, jsonb) to bastion_admin;
grant execute on function bastion.set_default_retention(jsonb) to bastion_admin;
grant execute on function bastion.set_retention_schedule(text) to bastion_admin;
grant execute on function bastion_private.retention_apply(uuid, jsonb, text, text, uuid[], jsonb) to bastion_operator;
grant execute on function bastion_private.effective_retention(jsonb, jsonb) to bastion_viewer;
grant execute on function bastion_private.retention_day_start(timestamptz) to bastion_viewer;
