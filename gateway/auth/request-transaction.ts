/**
 * A GraphQL-over-HTTP request's transaction, authenticated and begun in one
 * round trip.
 *
 * {@link beginRequestTransaction} sends `begin; select … from
 * bastion_private.begin_api_request(kind, hash)` as one simple-protocol
 * message on a pooled connection: PostgreSQL looks the credential up (a
 * revoked token, an ended session or a disabled user is refused on the very
 * next request: nothing is cached) and switches the transaction to the
 * user's role and `bastion.user_id`. The request's statements then run on
 * that connection. Before this, a request cost four round trips on its
 * critical path (the lookup on one connection; `begin` + settings, the
 * query, and the end on another) and every round trip is a socket write
 * that, on the 2-core machine of bench/api, took a quarter of the gateway's
 * CPU.
 *
 * The credential's hash is inlined as hex: we computed it (SHA-256 of a
 * token whose shape was checked), and its shape is checked again here.
 * CSRF is checked in JS after the round trip, as before; a refused request
 * rolls back.
 *
 * Operations keep the transaction semantics of PostGraphile's own adaptor:
 * - a read (query) runs in the open transaction; if a statement fails, the
 *   next one gets a fresh transaction (same role and user), so one failed
 *   field does not fail the others;
 * - each mutation call commits (or rolls back) on its own, as with the stock
 *   adaptor: the first one inside the authentication's transaction, later
 *   ones in new transactions on the same connection;
 * - {@link RequestTransaction.end} commits what is left (reads, and the
 *   at-most-once-a-minute `last_used_at` of the credential) and returns the
 *   connection to the pool. The adapter calls it after the answer is
 *   written: nothing a read returned waits on that commit. Calls after
 *   `end` (a streamed result still running) get their own pooled
 *   connection, as WebSocket operations do.
 *
 * The role and user id are transaction-local: every path that gives the
 * connection back to the pool first ends the transaction (or destroys the
 * connection), so no setting outlives its request.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { makeWithPgClientViaPgClientAlreadyInTransaction, type NodePostgresPgClient } from 'postgraphile/@dataplan/pg/adaptors/pg';
import { BastionError } from '../../core/errors.ts';
import { UUID_RE } from '../../core/ids.ts';
import type { Role } from '../../db/queries/sessions.ts';
import { beginAsSql, makeRoleWithPgClient, setUpClient } from '../graphql/role-client.ts';
import { PG_ROLE, readCredential, type RequestAuth } from './authenticate.ts';
import { CSRF_HEADER, csrfMatches, tokenHash } from './tokens.ts';

/** PostGraphile's `withPgClient` shape. */
export type WithPgClient = <T>(pgSettings: Record<string, string | undefined> | null, callback: (client: NodePostgresPgClient) => T | Promise<T>) => Promise<T>;

/**
 * Where the connection's transaction stands:
 * - `open`: a transaction as the request's role and user, nothing failed;
 * - `failed`: a statement failed in it (PostgreSQL refuses the rest until a rollback);
 * - `idle`: no transaction (a mutation call committed or rolled back its own);
 * - `ended`: the connection went back to the pool.
 */
type State = 'open' | 'failed' | 'idle' | 'ended';

const HASH_HEX_RE = /^[0-9a-f]{64}$/;
const ROLES: ReadonlySet<string> = new Set(Object.keys(PG_ROLE));

interface BeginRow {
  user_id: string;
  username: string;
  role: Role;
  token_id: string | null;
  session_expires_at: Date | null;
}

/** The SQL text that begins and authenticates (exported for tests). */
export function beginApiRequestSql(kind: 'token' | 'session', hash: Buffer): string {
  const hex = hash.toString('hex');
  // Inlined into SQL: only ever 32 bytes of hex, whatever produced them.
  if (!HASH_HEX_RE.test(hex)) throw new BastionError('unauthorized');
  return `begin; select user_id, username, role, token_id, session_expires_at from bastion_private.begin_api_request('${kind}', decode('${hex}', 'hex'))`;
}

/** One request's connection and transaction; see the file comment. */
export class RequestTransaction {
  /** Who the request is. */
  readonly auth: RequestAuth;
  readonly #pool: pg.Pool;
  readonly #client: pg.PoolClient;
  readonly #logger: Logger | undefined;
  #state: State = 'open';
  /** Calls and the end run one at a time on the one connection. */
  #tail: Promise<unknown> = Promise.resolve();
  #ended: Promise<void> | undefined;
  #fallback: { read?: WithPgClient; write?: WithPgClient } = {};

  /** Use {@link beginRequestTransaction}. */
  constructor(pool: pg.Pool, client: pg.PoolClient, auth: RequestAuth, logger?: Logger) {
    this.#pool = pool;
    this.#client = client;
    this.auth = auth;
    this.#logger = logger;
  }

  /** Where the transaction stands (tests). */
  get state(): State {
    return this.#state;
  }

  /**
   * The `withPgClient` for this request's operation: `read` for queries
   * (the open transaction), `write` for mutations (a commit per call).
   */
  withPgClient(mode: 'read' | 'write'): WithPgClient {
    return (_pgSettings, callback) => this.#serialise(() => this.#run(mode, callback));
  }

  /**
   * Commit what is left (or roll back a failed transaction) and give the
   * connection back. Idempotent; waits for calls in progress. A connection
   * whose end fails is destroyed, not reused.
   */
  end(): Promise<void> {
    this.#ended ??= this.#serialise(async () => {
      const state = this.#state;
      this.#state = 'ended';
      try {
        if (state === 'open') await this.#client.query('commit');
        else if (state === 'failed') await this.#client.query('rollback');
        this.#client.release();
      } catch (err) {
        this.#client.release(err as Error);
        this.#logger?.warn({ err }, 'ending a GraphQL request transaction failed; the connection was closed');
      }
    });
    return this.#ended;
  }

  #serialise<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  async #run<T>(mode: 'read' | 'write', callback: (client: NodePostgresPgClient) => T | Promise<T>): Promise<T> {
    if (this.#state === 'ended') return this.#fallbackFor(mode)(null, callback);
    if (this.#state !== 'open') {
      // A fresh transaction as the same role and user, in one message.
      const begin = beginAsSql(PG_ROLE[this.auth.role], this.auth.userId);
      await this.#client.query(this.#state === 'failed' ? `rollback; ${begin}` : begin);
      this.#state = 'open';
    }
    let result: T;
    try {
      result = await makeWithPgClientViaPgClientAlreadyInTransaction(this.#client as never, true)(null, callback);
    } catch (e) {
      // We cannot tell a JS error from an aborted transaction; assume the latter.
      this.#state = 'failed';
      if (mode === 'write') {
        // As the stock adaptor: the failed call's transaction ends now. If
        // even the rollback fails, `end` tries again and drops the connection.
        await this.#client.query('rollback').then(
          () => (this.#state = 'idle'),
          () => {},
        );
      }
      throw e;
    }
    if (mode === 'write') {
      this.#state = 'failed';
      await this.#client.query('commit');
      this.#state = 'idle';
    }
    return result;
  }

  #fallbackFor(mode: 'read' | 'write'): WithPgClient {
    const settings = { role: PG_ROLE[this.auth.role], 'bastion.user_id': this.auth.userId };
    const make = () => makeRoleWithPgClient(this.#pool, { readOnly: mode === 'read' }) as unknown as WithPgClient;
    const f = (this.#fallback[mode] ??= make());
    return (_pgSettings, callback) => f(settings, callback);
  }
}

/**
 * Authenticate a request from its headers and begin its transaction in one
 * round trip. Throws `unauthorized` (no credential), `invalid_token` or
 * `session_expired` (401), as {@link authenticate} does; nothing is held
 * then.
 */
export async function beginRequestTransaction(pool: pg.Pool, headers: Readonly<Record<string, string | undefined>>, logger?: Logger): Promise<RequestTransaction> {
  const credential = readCredential(headers);
  switch (credential.kind) {
    case 'none':
      throw new BastionError('unauthorized', 'Sign in (session cookie) or send Authorization: Bearer <API token>');
    case 'malformed':
      throw credential.what === 'authorization'
        ? new BastionError('invalid_token', 'The Authorization header must be "Bearer bst_…" with an API token')
        : new BastionError('session_expired');
  }
  const sql = beginApiRequestSql(credential.kind, tokenHash(credential.token));
  const client = await pool.connect();
  let row: BeginRow | undefined;
  try {
    await setUpClient(client);
    const results = (await client.query(sql)) as unknown as pg.QueryResult<BeginRow>[];
    row = results[1]?.rows[0];
  } catch (e) {
    // Whatever failed, the connection may be inside the transaction: roll
    // back before reusing it, or drop it.
    await client.query('rollback').then(
      () => client.release(),
      (err: Error) => client.release(err),
    );
    throw e;
  }
  if (!row || !ROLES.has(row.role) || !UUID_RE.test(row.user_id)) {
    await client.query('rollback').then(
      () => client.release(),
      (err: Error) => client.release(err),
    );
    throw new BastionError(credential.kind === 'token' ? 'invalid_token' : 'session_expired');
  }
  const auth: RequestAuth =
    credential.kind === 'token'
      ? { kind: 'token', userId: row.user_id, username: row.username, role: row.role, csrfOk: true, tokenId: row.token_id ?? undefined }
      : { kind: 'session', userId: row.user_id, username: row.username, role: row.role, csrfOk: csrfMatches(credential.token, headers[CSRF_HEADER]), sessionToken: credential.token };
  return new RequestTransaction(pool, client, auth, logger);
}
