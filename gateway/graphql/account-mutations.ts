/**
 * GraphQL mutations that need the gateway between the client and SQL:
 * passwords are hashed (scrypt) and secrets sealed (AES-GCM with the hub's
 * key) in this process, so PostgreSQL never receives either in clear.
 *
 * - `createUser(input: {username, role, password})` → `{user}` (admin)
 * - `resetUserPassword(input: {userId, password})` → `{user}` (admin; their sessions end)
 * - `putWebdavSecret(input: {nodeId, name, username, password})` → `{created}` (admin)
 *
 * Each runs in the request's transaction as its role (the SQL functions'
 * grants decide), like every other mutation.
 */
import { object, type Step } from 'postgraphile/grafast';
import { sideEffectWithPgClientTransaction } from 'postgraphile/@dataplan/pg';
import { extendSchema, gql } from 'postgraphile/utils';
import { BastionError } from '../../core/errors.ts';
import { isNodeId } from '../../core/ids.ts';
import type { SecretKeyProvider } from '../../engine/secrets/secret-key.ts';
import { putWebdavSecret } from '../../engine/secrets/secret-store.ts';
import { CREATE_USER_FN, SET_USER_PASSWORD_FN, requireExecute } from '../../db/queries/users.ts';
import { checkPassword, hashPassword } from '../auth/password.ts';

/** The function putWebdavSecret ends in (its grant decides who may). */
const PUT_SECRET_FN = 'bastion.put_secret(text, bastion.secret_kind, text, text, bytea, bytea)';

type PgClientLike = { query<T>(opts: { text: string; values?: unknown[] }): Promise<{ rows: T[] }> };

/** Adapt PostGraphile's client to the `query(text, values)` shape engine/secrets expects. */
function queryable(client: PgClientLike) {
  return {
    query: async (text: string, values?: unknown[]) => {
      const r = await client.query<Record<string, unknown>>({ text, values: values ?? [] });
      return { rows: r.rows, rowCount: r.rows.length, command: '', oid: 0, fields: [] } as never;
    },
  };
}

/** The plugin; `secretKeys` seals secrets (absent: putWebdavSecret answers secret_key_unavailable). */
export function accountMutationsPlugin(options: { secretKeys?: SecretKeyProvider | undefined }) {
  return extendSchema((build) => {
    const users = Object.values(build.input.pgRegistry.pgResources).find(
      (r) => !r.parameters && (r.codec.extensions as { pg?: { schemaName?: string; name?: string } } | undefined)?.pg?.schemaName === 'bastion' && (r.codec.extensions as { pg?: { name?: string } }).pg?.name === 'users',
    ) as unknown as { executor: never; codec: never; get(spec: Record<string, Step>): Step } | undefined;
    if (!users) throw new Error('accountMutationsPlugin: bastion.users is missing from the schema');
    const userType = build.inflection.tableType(users.codec);

    return {
      typeDefs: gql`
        input CreateUserInput {
          """Login name (1–64 characters, unique without regard to case)."""
          username: String!
          role: UserRole!
          """12 to 1024 characters."""
          password: String!
        }
        type CreateUserPayload {
          user: ${userType}
        }
        input ResetUserPasswordInput {
          userId: UUID!
          """12 to 1024 characters."""
          password: String!
        }
        type ResetUserPasswordPayload {
          user: ${userType}
        }
        input PutWebdavSecretInput {
          """'hub' or an agent id."""
          nodeId: String!
          name: String!
          username: String!
          password: String!
        }
        type PutWebdavSecretPayload {
          """True when the secret is new, false when it replaced one."""
          created: Boolean!
        }
        extend type Mutation {
          """Admin: create a user (the password is hashed by the server)."""
          createUser(input: CreateUserInput!): CreateUserPayload
          """Admin: set a new password for a user; their sessions end."""
          resetUserPassword(input: ResetUserPasswordInput!): ResetUserPasswordPayload
          """Admin: store WebDAV credentials for a node (sealed by the server; never readable back through the API)."""
          putWebdavSecret(input: PutWebdavSecretInput!): PutWebdavSecretPayload
        }
      `,
      objects: {
        Mutation: {
          plans: {
            createUser(_$root: Step, fieldArgs: { getRaw(path: string): Step }) {
              const $id = sideEffectWithPgClientTransaction(users.executor, fieldArgs.getRaw('input') as Step<{ username: string; role: string; password: string }>, async (client, input) => {
                await requireExecute(queryable(client as unknown as PgClientLike) as never, CREATE_USER_FN);
                checkPassword(input.password);
                const hash = await hashPassword(input.password);
                const { rows } = await (client as unknown as PgClientLike).query<{ id: string }>({ text: 'select bastion_private.create_user($1, $2::bastion.user_role, $3) as id', values: [input.username, input.role, hash] });
                return rows[0]?.id ?? null;
              });
              return object({ id: $id });
            },
            resetUserPassword(_$root: Step, fieldArgs: { getRaw(path: string): Step }) {
              const $id = sideEffectWithPgClientTransaction(users.executor, fieldArgs.getRaw('input') as Step<{ userId: string; password: string }>, async (client, input) => {
                await requireExecute(queryable(client as unknown as PgClientLike) as never, SET_USER_PASSWORD_FN);
                checkPassword(input.password);
                const hash = await hashPassword(input.password);
                await (client as unknown as PgClientLike).query({ text: 'select bastion_private.set_user_password($1, $2)', values: [input.userId, hash] });
                return input.userId;
              });
              return object({ id: $id });
            },
            putWebdavSecret(_$root: Step, fieldArgs: { getRaw(path: string): Step }) {
              const $created = sideEffectWithPgClientTransaction(
                users.executor,
                fieldArgs.getRaw('input') as Step<{ nodeId: string; name: string; username: string; password: string }>,
                async (client, input) => {
                  await requireExecute(queryable(client as unknown as PgClientLike) as never, PUT_SECRET_FN);
                  if (!isNodeId(input.nodeId)) throw new BastionError('invalid_input', "nodeId must be 'hub' or an agent UUID", { details: { field: 'nodeId', reason: 'invalid_format' } });
                  if (!options.secretKeys) throw new BastionError('secret_key_unavailable');
                  return putWebdavSecret(queryable(client as unknown as PgClientLike), options.secretKeys, input.nodeId, input.name, { username: input.username, password: input.password });
                },
              );
              return object({ created: $created });
            },
          },
        },
        CreateUserPayload: { plans: { user: ($p: Step & { get(k: string): Step }) => users.get({ id: $p.get('id') }) } },
        ResetUserPasswordPayload: { plans: { user: ($p: Step & { get(k: string): Step }) => users.get({ id: $p.get('id') }) } },
      },
    } as never;
  }, 'BastionAccountMutationsPlugin');
}
