-- 0002: first-run setup, logins and their throttle, sessions, users, API
-- tokens, and the change notifications GraphQL subscriptions listen to.
--
-- Who calls what:
-- * The gateway authenticates every request on its own (owner) connection
--   through the bastion_private functions below (setup, login, session and
--   token lookups); none of them is granted to an application role.
-- * Then it runs the request in a transaction as bastion_<role> with
--   bastion.user_id set; everything a user does (users, tokens, and the other
--   migrations' actions) is a function granted to the lowest role allowed.
-- * Passwords are hashed by the gateway (scrypt, gateway/auth/password.ts);
--   SQL only stores the PHC string and checks its shape. Session tokens are
--   random bytes from the gateway; SQL stores their SHA-256. API tokens are
--   generated here, so a DBA can mint one with psql; only their SHA-256 is kept.
--
-- Change notifications (docs/api.md "Subscriptions"): NOTIFY channel names are
--   bastion:run:<run_id>             runs, run_events (this file)
--   bastion:job:<job_id>:snapshots   run_artifacts (this file)
--   bastion:run:<run_id>:delete      delete tasks and their events (0004)
--   bastion:run:<run_id>:cleanup     incomplete-cleanup tasks and events (0006)
-- with a small JSON payload {table, op, run_id, seq?, …}; subscribers re-read
-- the row under their own role, so row-level security still decides what
-- they see. Later migrations attach bastion_private.notify_change() to their
-- tables with the same naming.

-- ---------------------------------------------------------------------------
-- Tables

create table bastion_private.api_tokens (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references bastion.users (id) on delete cascade,
  name text not null
    constraint api_tokens_name_format check (char_length(name) between 1 and 100 and name = btrim(name) and name !~ '[[:cntrl:]]'),
  token_hash bytea not null constraint api_tokens_token_hash_length check (octet_length(token_hash) = 32),
  token_hint text not null constraint api_tokens_token_hint_format check (token_hint ~ '^bst_[A-Za-z0-9_-]{4}$'),
  role bastion.user_role not null,
  created_at timestamptz not null default now(),
  created_by uuid references bastion.users (id) on delete set null,
  last_used_at timestamptz,
  expires_at timestamptz,
  revoked_at timestamptz,
  revoked_by uuid references bastion.users (id) on delete set null,
  constraint api_tokens_expiry_after_creation check (expires_at is null or expires_at > created_at),
  constraint api_tokens_revoked_by_needs_revoked_at check (revoked_by is null or revoked_at is not null)
);
create unique index api_tokens_token_hash_key on bastion_private.api_tokens (token_hash);
create index api_tokens_user_id_idx on bastion_private.api_tokens (user_id);
comment on table bastion_private.api_tokens is 'Bearer tokens for automation. The token is shown once when created; only its SHA-256 is stored.';
comment on column bastion_private.api_tokens.id is 'Token id (shown in lists, used to revoke).';
comment on column bastion_private.api_tokens.user_id is 'User the token acts for; it never gets more than that user''s current role.';
comment on column bastion_private.api_tokens.name is 'What the token is for (e.g. "nightly report script").';
comment on column bastion_private.api_tokens.token_hash is 'SHA-256 of the token text.';
comment on column bastion_private.api_tokens.token_hint is 'First 8 characters of the token (bst_ + 4), so an operator can tell tokens apart; not enough to guess it.';
comment on column bastion_private.api_tokens.role is 'Role requested for the token; the effective role is the lower of this and the user''s role.';
comment on column bastion_private.api_tokens.created_at is 'Creation time.';
comment on column bastion_private.api_tokens.created_by is 'Admin who created the token.';
comment on column bastion_private.api_tokens.last_used_at is 'Last request authenticated with the token (updated at most once a minute).';
comment on column bastion_private.api_tokens.expires_at is 'The token is refused after this time; NULL never expires.';
comment on column bastion_private.api_tokens.revoked_at is 'Set when revoked (or when its user was disabled): refused from the next request on.';
comment on column bastion_private.api_tokens.revoked_by is 'Admin who revoked the token.';

create table bastion_private.login_throttle (
  client_address text primary key constraint login_throttle_client_address_length check (char_length(client_address) between 1 and 64),
  window_started_at timestamptz not null,
  failures integer not null constraint login_throttle_failures_positive check (failures > 0),
  locked_until timestamptz,
  updated_at timestamptz not null default now()
);
create index login_throttle_updated_at_idx on bastion_private.login_throttle (updated_at);
comment on table bastion_private.login_throttle is 'Login attempts per client address: 10 attempts without success within 10 minutes lock the address for 15 minutes. A successful login removes the row.';
comment on column bastion_private.login_throttle.client_address is 'Client IP address (after trusted-proxy resolution).';
comment on column bastion_private.login_throttle.window_started_at is 'Start of the current 10-minute counting window.';
comment on column bastion_private.login_throttle.failures is 'Attempts without success in the current window (counted when the attempt starts, so parallel guesses are counted too).';
comment on column bastion_private.login_throttle.locked_until is 'Logins from this address are refused (429) until this time.';
comment on column bastion_private.login_throttle.updated_at is 'Last attempt; rows idle for 30 days are pruned hourly.';

-- ---------------------------------------------------------------------------
-- Shared checks

create function bastion_private.check_username(p_username text) returns text
language plpgsql immutable
as $$
begin
  if p_username is null or btrim(p_username) = '' then
    perform bastion_private.raise_error('invalid_username', 400, 'username must not be blank', jsonb_build_object('field', 'username', 'reason', 'required'));
  end if;
  if char_length(btrim(p_username)) > 64 then
    perform bastion_private.raise_error('invalid_username', 400, 'username must be at most 64 characters', jsonb_build_object('field', 'username', 'reason', 'max_length', 'max', 64));
  end if;
  if p_username ~ '[[:cntrl:]]' then
    perform bastion_private.raise_error('invalid_username', 400, 'username must not contain control characters', jsonb_build_object('field', 'username', 'reason', 'invalid_characters'));
  end if;
  return btrim(p_username);
end
$$;
comment on function bastion_private.check_username(text) is 'Trimmed username, or an invalid_username error naming the reason.';

create function bastion_private.check_password_hash(p_password_hash text) returns text
language plpgsql immutable
as $$
begin
  -- The gateway hashes; this only refuses something that is not one of its
  -- hashes (a plaintext password passed by mistake, an empty string).
  if p_password_hash is null or p_password_hash !~ '^\$scrypt\$ln=[0-9]{1,2},r=[0-9]{1,3},p=[0-9]{1,3}\$[A-Za-z0-9+/]{16,}\$[A-Za-z0-9+/]{32,}$' then
    perform bastion_private.raise_error('invalid_input', 400, 'password_hash is not a scrypt PHC string', jsonb_build_object('field', 'password_hash', 'reason', 'invalid_format'));
  end if;
  return p_password_hash;
end
$$;
comment on function bastion_private.check_password_hash(text) is 'Refuse anything that is not a scrypt PHC string produced by gateway/auth/password.ts.';

create function bastion_private.role_rank(p_role bastion.user_role) returns integer
language sql immutable
as $$
  select case p_role when 'viewer' then 1 when 'operator' then 2 when 'admin' then 3 end
$$;
comment on function bastion_private.role_rank(bastion.user_role) is 'viewer 1 < operator 2 < admin 3, for "role at most" comparisons.';

create function bastion_private.lock_user_admin() returns void
language sql
as $$
  -- One lock for every change that could leave Bastion without an enabled
  -- admin (two admins demoting each other at once would otherwise both pass
  -- the check), and for first-run setup (exactly one first admin).
  select pg_advisory_xact_lock(7201955012002)
$$;
comment on function bastion_private.lock_user_admin() is 'Transaction advisory lock serialising setup and changes of admin users.';

create function bastion_private.require_other_enabled_admin(p_user_id uuid) returns void
language plpgsql
as $$
begin
  if exists (select 1 from bastion.users where id = p_user_id and role = 'admin' and disabled_at is null)
     and not exists (select 1 from bastion.users where id <> p_user_id and role = 'admin' and disabled_at is null) then
    perform bastion_private.raise_error('last_admin', 409, 'this is the last enabled admin; make another user admin first', jsonb_build_object('user_id', p_user_id));
  end if;
end
$$;
comment on function bastion_private.require_other_enabled_admin(uuid) is 'Refuse (409 last_admin) a change that would leave no enabled admin. Call after bastion_private.lock_user_admin().';

-- ---------------------------------------------------------------------------
-- First-run setup (gateway, owner connection)

create function bastion_private.needs_setup() returns boolean
language sql stable
as $$
  select not exists (select 1 from bastion.users)
$$;
comment on function bastion_private.needs_setup() is 'True until the first user exists (GET /api/setup/status).';

create function bastion_private.setup_first_admin(p_username text, p_password_hash text) returns uuid
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_username text := bastion_private.check_username(p_username);
  v_id uuid;
begin
  perform bastion_private.check_password_hash(p_password_hash);
  -- Concurrent setups queue on the lock; the statement after it sees the
  -- winner's committed user (READ COMMITTED takes a new snapshot), so exactly
  -- one request creates the first admin and the others get already_initialized.
  perform bastion_private.lock_user_admin();
  if exists (select 1 from bastion.users) then
    perform bastion_private.raise_error('already_initialized', 409, 'setup is closed: an admin already exists; sign in instead');
  end if;
  insert into bastion.users (username, role) values (v_username, 'admin') returning id into v_id;
  insert into bastion_private.user_passwords (user_id, password_hash) values (v_id, p_password_hash);
  return v_id;
end
$$;
comment on function bastion_private.setup_first_admin(text, text) is 'Create the first admin when no user exists (exactly one wins under concurrent calls); already_initialized (409) afterwards.';

-- ---------------------------------------------------------------------------
-- Login, sessions and tokens (gateway, owner connection)

create function bastion_private.begin_login_attempt(p_client_address text, p_max_failures integer default 10, p_window interval default '10 minutes', p_lock interval default '15 minutes') returns timestamptz
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_locked timestamptz;
begin
  -- Attempts from one address take turns (check, then count), so a burst of
  -- parallel guesses cannot all pass the check before the lock is written.
  perform pg_advisory_xact_lock(hashtextextended('bastion.login:' || p_client_address, 7201955012003));
  -- Refused while locked (the refused attempt is not counted).
  select locked_until into v_locked from bastion_private.login_throttle
   where client_address = p_client_address and locked_until > now();
  if v_locked is not null then
    return v_locked;
  end if;
  -- Count the attempt before the password is checked: a burst of parallel
  -- guesses is counted in full, and a success deletes the row again
  -- (bastion_private.create_session). SET expressions read the old row.
  insert into bastion_private.login_throttle as t (client_address, window_started_at, failures)
  values (p_client_address, now(), 1)
  on conflict (client_address) do update set
    failures = case when t.window_started_at <= now() - p_window then 1 else t.failures + 1 end,
    window_started_at = case when t.window_started_at <= now() - p_window then now() else t.window_started_at end,
    locked_until = case
      when (case when t.window_started_at <= now() - p_window then 1 else t.failures + 1 end) >= p_max_failures then now() + p_lock
      else t.locked_until end,
    updated_at = now();
  return null;
end
$$;
comment on function bastion_private.begin_login_attempt(text, integer, interval, interval) is 'Start a login attempt from an address: returns locked_until when the address is locked (refuse with 429), else counts the attempt and returns NULL.';

create function bastion_private.login_lookup(p_username text) returns table (user_id uuid, username text, password_hash text, role bastion.user_role, disabled boolean)
language sql stable
as $$
  select u.id, u.username, p.password_hash, u.role, u.disabled_at is not null
    from bastion.users u left join bastion_private.user_passwords p on p.user_id = u.id
   where lower(u.username) = lower(btrim(p_username))
$$;
comment on function bastion_private.login_lookup(text) is 'The user and password hash for a login name (case-insensitive); no row when unknown.';

create function bastion_private.create_session(p_token_hash bytea, p_user_id uuid, p_client_address text, p_user_agent text, p_ttl interval default '7 days') returns timestamptz
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_expires timestamptz := now() + p_ttl;
begin
  insert into bastion_private.sessions (token_hash, user_id, expires_at, client_address, user_agent)
  values (p_token_hash, p_user_id, v_expires, left(p_client_address, 64), left(p_user_agent, 512));
  update bastion.users set last_login_at = now() where id = p_user_id;
  delete from bastion_private.login_throttle where client_address = p_client_address;
  return v_expires;
end
$$;
comment on function bastion_private.create_session(bytea, uuid, text, text, interval) is 'Record a successful login: new session (fixed expiry), last_login_at, and the address''s throttle row cleared. Returns the expiry.';

create function bastion_private.authenticate_session(p_token_hash bytea) returns table (user_id uuid, username text, role bastion.user_role, expires_at timestamptz)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_stale boolean;
begin
  select u.id, u.username, u.role, s.expires_at, s.last_seen_at < now() - interval '1 minute'
    into user_id, username, role, expires_at, v_stale
    from bastion_private.sessions s join bastion.users u on u.id = s.user_id
   where s.token_hash = p_token_hash and s.expires_at > now() and u.disabled_at is null;
  if not found then
    return;
  end if;
  -- On every API request, so: at most one write a minute per session (the
  -- UPDATE runs only when the read says it is due), and never a wait: when
  -- the row is locked (a concurrent request is recording the same use inside
  -- its request transaction, see begin_api_request) that one records it.
  if v_stale then
    update bastion_private.sessions s set last_seen_at = now()
     where s.token_hash = (select l.token_hash from bastion_private.sessions l
                            where l.token_hash = p_token_hash and l.last_seen_at < now() - interval '1 minute'
                              for update skip locked);
  end if;
  return next;
end
$$;
comment on function bastion_private.authenticate_session(bytea) is 'The user of a live session (not expired, user not disabled), or no row.';

create function bastion_private.authenticate_api_token(p_token_hash bytea) returns table (token_id uuid, user_id uuid, username text, role bastion.user_role)
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_stale boolean;
begin
  select t.id, u.id, u.username,
         -- A token never acts above its user's current role.
         case when bastion_private.role_rank(t.role) <= bastion_private.role_rank(u.role) then t.role else u.role end,
         t.last_used_at is null or t.last_used_at < now() - interval '1 minute'
    into token_id, user_id, username, role, v_stale
    from bastion_private.api_tokens t join bastion.users u on u.id = t.user_id
   where t.token_hash = p_token_hash and t.revoked_at is null
     and (t.expires_at is null or t.expires_at > now()) and u.disabled_at is null;
  if not found then
    return;
  end if;
  -- At most one write a minute per token, never a wait (see authenticate_session).
  if v_stale then
    update bastion_private.api_tokens t set last_used_at = now()
     where t.id = (select l.id from bastion_private.api_tokens l
                    where l.id = token_id and (l.last_used_at is null or l.last_used_at < now() - interval '1 minute')
                      for update skip locked);
  end if;
  return next;
end
$$;
comment on function bastion_private.authenticate_api_token(bytea) is 'The user and effective role (lower of token and user role) of a live API token (not revoked, not expired, user not disabled), or no row.';

create function bastion_private.begin_api_request(p_kind text, p_token_hash bytea)
returns table (user_id uuid, username text, role bastion.user_role, token_id uuid, session_expires_at timestamptz)
language plpgsql
-- Not SECURITY DEFINER: PostgreSQL refuses SET ROLE inside one, and the
-- caller must be the owner anyway (no application role may execute this).
set search_path = pg_catalog, pg_temp
as $$
declare
  v_user uuid;
  v_username text;
  v_role bastion.user_role;
  v_token uuid;
  v_expires timestamptz;
begin
  -- The gateway's per-request authentication and the start of the request's
  -- transaction in one round trip: the gateway sends
  --   begin; select … from bastion_private.begin_api_request(kind, hash)
  -- as one message, then runs the request's statements on that connection.
  -- Revocation stays effective on the next request: nothing is cached.
  if p_kind = 'token' then
    select a.user_id, a.username, a.role, a.token_id into v_user, v_username, v_role, v_token
      from bastion_private.authenticate_api_token(p_token_hash) a;
  elsif p_kind = 'session' then
    select a.user_id, a.username, a.role, a.expires_at into v_user, v_username, v_role, v_expires
      from bastion_private.authenticate_session(p_token_hash) a;
  else
    perform bastion_private.raise_error('invalid_input', 400, 'credential kind must be token or session', jsonb_build_object('field', 'kind', 'reason', 'invalid_value'));
  end if;
  if v_user is null then
    -- No row: the gateway refuses (invalid_token / session_expired) and rolls back.
    return;
  end if;
  -- Transaction-local, like `set local`: they end with this transaction, so
  -- the pooled connection never carries them into another request. From
  -- here on the transaction runs as the user's role (grants, row-level
  -- security) and bastion_private.current_user_id() is the user.
  perform set_config('role', 'bastion_' || v_role::text, true);
  perform set_config('bastion.user_id', v_user::text, true);
  return query select v_user, v_username, v_role, v_token, v_expires;
end
$$;
comment on function bastion_private.begin_api_request(text, bytea) is 'Gateway, inside a transaction it just began: authenticate a request (p_kind token or session, p_token_hash the SHA-256 of the credential, as authenticate_api_token / authenticate_session do) and, when it is valid, switch the transaction to the user''s role and bastion.user_id (transaction-local). One row (user, effective role, token id or session expiry), or no row (refuse and roll back).';

create function bastion_private.delete_session(p_token_hash bytea) returns boolean
language sql
as $$
  with d as (delete from bastion_private.sessions where token_hash = p_token_hash returning 1)
  select exists (select 1 from d)
$$;
comment on function bastion_private.delete_session(bytea) is 'Log out: delete the session; true when it existed.';

create function bastion_private.prune_auth_state() returns integer
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
  v_sessions integer;
  v_throttle integer;
begin
  delete from bastion_private.sessions where expires_at < now();
  get diagnostics v_sessions = row_count;
  delete from bastion_private.login_throttle
   where updated_at < now() - interval '30 days' and (locked_until is null or locked_until < now());
  get diagnostics v_throttle = row_count;
  return v_sessions + v_throttle;
end
$$;
comment on function bastion_private.prune_auth_state() is 'Hourly: delete expired sessions and login-throttle rows idle for 30 days; returns rows deleted.';

-- ---------------------------------------------------------------------------
-- Users (admin)

create function bastion.me() returns bastion.users
language sql stable
as $$
  select * from bastion.users where id = bastion_private.current_user_id()
$$;
comment on function bastion.me() is 'The signed-in user (null for workers and psql).';
grant execute on function bastion.me() to bastion_viewer;

create function bastion_private.create_user(p_username text, p_role bastion.user_role, p_password_hash text) returns uuid
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_username text := bastion_private.check_username(p_username);
  v_id uuid;
begin
  perform bastion_private.check_password_hash(p_password_hash);
  if p_role is null then
    perform bastion_private.raise_error('invalid_input', 400, 'role is required', jsonb_build_object('field', 'role', 'reason', 'required'));
  end if;
  if exists (select 1 from bastion.users where lower(username) = lower(v_username)) then
    perform bastion_private.raise_error('username_taken', 409, 'a user with this name already exists', jsonb_build_object('field', 'username'));
  end if;
  insert into bastion.users (username, role) values (v_username, p_role) returning id into v_id;
  insert into bastion_private.user_passwords (user_id, password_hash) values (v_id, p_password_hash);
  return v_id;
exception when unique_violation then
  -- A concurrent create of the same name won the race.
  perform bastion_private.raise_error('username_taken', 409, 'a user with this name already exists', jsonb_build_object('field', 'username'));
  return null;
end
$$;
comment on function bastion_private.create_user(text, bastion.user_role, text) is 'Admin: create a user with a password hashed by the gateway; returns the id. username_taken (409) when the name exists.';
grant execute on function bastion_private.create_user(text, bastion.user_role, text) to bastion_admin;

create function bastion_private.store_password(p_user_id uuid, p_password_hash text, p_keep_session bytea) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  perform bastion_private.check_password_hash(p_password_hash);
  update bastion_private.user_passwords set password_hash = p_password_hash, updated_at = now() where user_id = p_user_id;
  if not found then
    if not exists (select 1 from bastion.users where id = p_user_id) then
      perform bastion_private.raise_error('user_not_found', 404, 'user not found', jsonb_build_object('user_id', p_user_id));
    end if;
    insert into bastion_private.user_passwords (user_id, password_hash) values (p_user_id, p_password_hash);
  end if;
  -- Every other session of the user ends: whoever knew the old password is out.
  delete from bastion_private.sessions where user_id = p_user_id and token_hash is distinct from p_keep_session;
  update bastion.users set updated_at = now() where id = p_user_id;
end
$$;
comment on function bastion_private.store_password(uuid, text, bytea) is 'Store a new password hash and end the user''s sessions except p_keep_session. Callers check who may do this.';

-- Two entry points because a SECURITY DEFINER function cannot tell which
-- application role called it: the grant decides instead.
create function bastion_private.set_user_password(p_user_id uuid, p_password_hash text) returns void
language sql
security definer
set search_path = pg_catalog, pg_temp
as $$
  select bastion_private.store_password(p_user_id, p_password_hash, null)
$$;
comment on function bastion_private.set_user_password(uuid, text) is 'Admin: reset a user''s password (hashed by the gateway) and end all their sessions.';
grant execute on function bastion_private.set_user_password(uuid, text) to bastion_admin;

create function bastion_private.set_own_password(p_password_hash text, p_keep_session bytea) returns void
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_user uuid := bastion_private.current_user_id();
begin
  -- The gateway has checked the current password before calling this.
  if v_user is null then
    perform bastion_private.raise_error('unauthorized', 401, 'no signed-in user');
  end if;
  perform bastion_private.store_password(v_user, p_password_hash, p_keep_session);
end
$$;
comment on function bastion_private.set_own_password(text, bytea) is 'Any user: change your own password (the gateway verified the current one) and end your other sessions.';
grant execute on function bastion_private.set_own_password(text, bytea) to bastion_viewer;

create function bastion.set_user_role(user_id uuid, role bastion.user_role) returns bastion.users
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_user bastion.users;
begin
  if role is null then
    perform bastion_private.raise_error('invalid_input', 400, 'role is required', jsonb_build_object('field', 'role', 'reason', 'required'));
  end if;
  perform bastion_private.lock_user_admin();
  if role <> 'admin' then
    perform bastion_private.require_other_enabled_admin(set_user_role.user_id);
  end if;
  update bastion.users u set role = set_user_role.role, updated_at = now() where u.id = set_user_role.user_id returning u.* into v_user;
  if v_user.id is null then
    perform bastion_private.raise_error('user_not_found', 404, 'user not found', jsonb_build_object('user_id', set_user_role.user_id));
  end if;
  return v_user;
end
$$;
comment on function bastion.set_user_role(uuid, bastion.user_role) is 'Admin: change a user''s role (takes effect on their next request, tokens included); last_admin (409) when it would leave no enabled admin.';
grant execute on function bastion.set_user_role(uuid, bastion.user_role) to bastion_admin;

create function bastion.disable_user(user_id uuid) returns bastion.users
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_user bastion.users;
begin
  if disable_user.user_id = bastion_private.current_user_id() then
    perform bastion_private.raise_error('cannot_disable_self', 409, 'you cannot disable your own account');
  end if;
  perform bastion_private.lock_user_admin();
  perform bastion_private.require_other_enabled_admin(disable_user.user_id);
  update bastion.users u set disabled_at = coalesce(u.disabled_at, now()), updated_at = now()
   where u.id = disable_user.user_id returning u.* into v_user;
  if v_user.id is null then
    perform bastion_private.raise_error('user_not_found', 404, 'user not found', jsonb_build_object('user_id', disable_user.user_id));
  end if;
  -- At once: sessions end and tokens are revoked (authentication also checks
  -- disabled_at, so nothing slips through between these statements).
  delete from bastion_private.sessions s where s.user_id = disable_user.user_id;
  update bastion_private.api_tokens t set revoked_at = now(), revoked_by = bastion_private.current_user_id()
   where t.user_id = disable_user.user_id and t.revoked_at is null;
  return v_user;
end
$$;
comment on function bastion.disable_user(uuid) is 'Admin: disable a user: no more logins, sessions ended and API tokens revoked at once. cannot_disable_self, last_admin (409).';
grant execute on function bastion.disable_user(uuid) to bastion_admin;

create function bastion.enable_user(user_id uuid) returns bastion.users
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_user bastion.users;
begin
  update bastion.users u set disabled_at = null, updated_at = now() where u.id = enable_user.user_id returning u.* into v_user;
  if v_user.id is null then
    perform bastion_private.raise_error('user_not_found', 404, 'user not found', jsonb_build_object('user_id', enable_user.user_id));
  end if;
  return v_user;
end
$$;
comment on function bastion.enable_user(uuid) is 'Admin: allow a disabled user to log in again (their old tokens stay revoked).';
grant execute on function bastion.enable_user(uuid) to bastion_admin;

-- ---------------------------------------------------------------------------
-- API tokens (admin)

create type bastion.api_token_info as (
  id uuid,
  user_id uuid,
  username text,
  name text,
  token_hint text,
  role bastion.user_role,
  created_at timestamptz,
  last_used_at timestamptz,
  expires_at timestamptz,
  revoked_at timestamptz
);
comment on type bastion.api_token_info is 'An API token as lists show it (never the token or its hash).';

create type bastion.created_api_token as (
  id uuid,
  token text,
  name text,
  role bastion.user_role,
  user_id uuid,
  expires_at timestamptz
);
comment on type bastion.created_api_token is 'A new API token: `token` is shown this once and cannot be read again.';

create function bastion.create_api_token(name text, role bastion.user_role, expires_at timestamptz default null, user_id uuid default null) returns bastion.created_api_token
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_owner uuid := coalesce(create_api_token.user_id, bastion_private.current_user_id());
  v_owner_role bastion.user_role;
  v_name text := btrim(create_api_token.name);
  v_token text;
  v_id uuid;
begin
  if v_owner is null then
    perform bastion_private.raise_error('invalid_input', 400, 'user_id is required when no user is signed in', jsonb_build_object('field', 'user_id', 'reason', 'required'));
  end if;
  if v_name is null or v_name = '' or char_length(v_name) > 100 or v_name ~ '[[:cntrl:]]' then
    perform bastion_private.raise_error('invalid_input', 400, 'name must be 1 to 100 characters without control characters', jsonb_build_object('field', 'name', 'reason', 'invalid_format'));
  end if;
  if create_api_token.role is null then
    perform bastion_private.raise_error('invalid_input', 400, 'role is required', jsonb_build_object('field', 'role', 'reason', 'required'));
  end if;
  if create_api_token.expires_at is not null and create_api_token.expires_at <= now() then
    perform bastion_private.raise_error('invalid_input', 400, 'expires_at must be in the future', jsonb_build_object('field', 'expires_at', 'reason', 'in_the_past'));
  end if;
  select u.role into v_owner_role from bastion.users u where u.id = v_owner and u.disabled_at is null;
  if v_owner_role is null then
    perform bastion_private.raise_error('user_not_found', 404, 'user not found or disabled', jsonb_build_object('user_id', v_owner));
  end if;
  if bastion_private.role_rank(create_api_token.role) > bastion_private.role_rank(v_owner_role) then
    perform bastion_private.raise_error('token_role_too_high', 400, 'a token cannot have a higher role than its user', jsonb_build_object('field', 'role', 'user_role', v_owner_role));
  end if;
  -- 32 random bytes from two v4 UUIDs (244 random bits, PostgreSQL's strong
  -- random source), base64url without padding: "bst_" + 43 characters.
  v_token := 'bst_' || translate(encode(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()), 'base64'), '+/=', '-_');
  insert into bastion_private.api_tokens (user_id, name, token_hash, token_hint, role, created_by, expires_at)
  values (v_owner, v_name, sha256(convert_to(v_token, 'UTF8')), left(v_token, 8), create_api_token.role, bastion_private.current_user_id(), create_api_token.expires_at)
  returning id into v_id;
  return row(v_id, v_token, v_name, create_api_token.role, v_owner, create_api_token.expires_at)::bastion.created_api_token;
end
$$;
comment on function bastion.create_api_token(text, bastion.user_role, timestamptz, uuid) is 'Admin: create an API token for a user (default: yourself) with a role no higher than that user''s; returns the token once.';
grant execute on function bastion.create_api_token(text, bastion.user_role, timestamptz, uuid) to bastion_admin;

create function bastion.api_tokens() returns setof bastion.api_token_info
language sql stable
security definer
set search_path = pg_catalog, pg_temp
as $$
  select t.id, t.user_id, u.username, t.name, t.token_hint, t.role, t.created_at, t.last_used_at, t.expires_at, t.revoked_at
    from bastion_private.api_tokens t join bastion.users u on u.id = t.user_id
   order by t.created_at desc, t.id desc
$$;
comment on function bastion.api_tokens() is 'Admin: every API token, newest first (without the secret).';
grant execute on function bastion.api_tokens() to bastion_admin;

create function bastion.revoke_api_token(token_id uuid) returns bastion.api_token_info
language plpgsql
security definer
set search_path = pg_catalog, pg_temp
as $$
declare
  v_info bastion.api_token_info;
begin
  update bastion_private.api_tokens t set revoked_at = coalesce(t.revoked_at, now()), revoked_by = coalesce(t.revoked_by, bastion_private.current_user_id())
   where t.id = revoke_api_token.token_id;
  if not found then
    perform bastion_private.raise_error('token_not_found', 404, 'API token not found', jsonb_build_object('token_id', revoke_api_token.token_id));
  end if;
  select t.id, t.user_id, u.username, t.name, t.token_hint, t.role, t.created_at, t.last_used_at, t.expires_at, t.revoked_at
    into v_info
    from bastion_private.api_tokens t join bastion.users u on u.id = t.user_id where t.id = revoke_api_token.token_id;
  return v_info;
end
$$;
comment on function bastion.revoke_api_token(uuid) is 'Admin: revoke an API token; refused from the next request on. Revoking twice is a no-op.';
grant execute on function bastion.revoke_api_token(uuid) to bastion_admin;

-- ---------------------------------------------------------------------------
-- Change notifications for GraphQL subscriptions

create function bastion_private.notify_change() returns trigger
language plpgsql
as $$
declare
  -- TG_ARGV: [0] topic kind (run | job | …), [1] column holding the topic's
  -- id, [2] topic suffix ('' for none), [3…] columns copied into the payload.
  v_row jsonb := to_jsonb(case when tg_op = 'DELETE' then old else new end);
  v_payload jsonb := jsonb_build_object('table', tg_table_name, 'op', lower(tg_op));
  v_topic text;
  i integer;
begin
  v_topic := 'bastion:' || tg_argv[0] || ':' || (v_row ->> tg_argv[1]) || case when coalesce(tg_argv[2], '') = '' then '' else ':' || tg_argv[2] end;
  v_payload := v_payload || jsonb_build_object(tg_argv[1], v_row -> tg_argv[1]);
  if tg_nargs > 3 then
    for i in 3 .. tg_nargs - 1 loop
      v_payload := v_payload || jsonb_build_object(tg_argv[i], v_row -> tg_argv[i]);
    end loop;
  end if;
  perform pg_notify(v_topic, v_payload::text);
  return null;
end
$$;
comment on function bastion_private.notify_change() is 'AFTER ROW trigger: NOTIFY bastion:<kind>:<id>[:<suffix>] with {table, op, <id column>, <extra columns>} (arguments: kind, id column, suffix, extra columns…). See docs/api.md for the topic names.';

create trigger runs_notify after insert or update or delete on bastion.runs
  for each row execute function bastion_private.notify_change('run', 'id', '', 'status');
create trigger run_events_notify after insert on bastion.run_events
  for each row execute function bastion_private.notify_change('run', 'run_id', '', 'seq', 'kind');
-- run_artifacts is written in bulk (a retention tick marks thousands of
-- snapshots deleting in one statement; the delete queue does the same), so
-- its notifications come from statement-level triggers over the transition
-- tables, with notify_change's payloads ({table, op, job_id, run_id,
-- status}, one per row; NOTIFY drops duplicates within a transaction), as
-- 0004's delete-queue triggers do. A row-level trigger costs a to_jsonb of
-- the whole row and a PL/pgSQL call per row.
create function bastion_private.run_artifacts_notify() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
begin
  if tg_op = 'DELETE' then
    perform pg_notify('bastion:job:' || o.job_id || ':snapshots',
                      json_build_object('table', tg_table_name, 'op', 'delete', 'job_id', o.job_id, 'run_id', o.run_id, 'status', o.status)::text)
       from old_rows o;
  else
    perform pg_notify('bastion:job:' || n.job_id || ':snapshots',
                      json_build_object('table', tg_table_name, 'op', lower(tg_op), 'job_id', n.job_id, 'run_id', n.run_id, 'status', n.status)::text)
       from new_rows n;
  end if;
  return null;
end
$$;
comment on function bastion_private.run_artifacts_notify() is 'AFTER STATEMENT trigger of bastion.run_artifacts (transition tables new_rows/old_rows): NOTIFY bastion:job:<job_id>:snapshots per inserted, updated or deleted row with {table, op, job_id, run_id, status}, the payload of notify_change.';

create trigger run_artifacts_notify_insert after insert on bastion.run_artifacts
  referencing new table as new_rows
  for each statement execute function bastion_private.run_artifacts_notify();
create trigger run_artifacts_notify_update after update on bastion.run_artifacts
  referencing new table as new_rows
  for each statement execute function bastion_private.run_artifacts_notify();
create trigger run_artifacts_notify_delete after delete on bastion.run_artifacts
  referencing old table as old_rows
  for each statement execute function bastion_private.run_artifacts_notify();
