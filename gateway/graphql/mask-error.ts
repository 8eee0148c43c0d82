/**
 * What a GraphQL client sees of an error. Every error carries a stable code
 * in `extensions.code` (the catalogue in core/errors.ts):
 * - Bastion's domain errors (SQLSTATE BAnnn from the SQL functions, or a
 *   BastionError) keep their code, message and details;
 * - PostgreSQL's permission refusal (42501) is `forbidden`;
 * - request errors (syntax, validation, variable coercion, our limits) are
 *   about the client's own document: shown as they are, code `invalid_query`
 *   unless they already carry one;
 * - grafast's SafeErrors are meant for clients: shown, code `invalid_input`;
 * - anything else is unexpected: logged with an id, and the client gets only
 *   the id (code `internal_error`).
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { isSafeError } from 'postgraphile/grafast';
import { GraphQLError } from 'graphql';
import { toBastionError } from '../http-adapter.ts';

function rebuild(error: GraphQLError, message: string, extensions: Record<string, unknown>): GraphQLError {
  return new GraphQLError(message, { nodes: error.nodes ?? null, source: error.source ?? null, positions: error.positions ?? null, path: error.path ?? null, extensions });
}

/** Build grafserv's `maskError` for this process. */
export function makeMaskError(logger: Logger): (error: GraphQLError) => GraphQLError {
  return (error) => {
    const original = error.originalError;
    if (!original || original instanceof GraphQLError) {
      if (typeof error.extensions?.code === 'string') return error;
      return rebuild(error, error.message, { ...error.extensions, code: 'invalid_query' });
    }
    const known = toBastionError(original);
    if (known) {
      const extensions: Record<string, unknown> = { code: known.code, status: known.status };
      if (known.details !== undefined) extensions.details = known.details;
      return rebuild(error, known.message, extensions);
    }
    if (isSafeError(original)) {
      const ext = (original.extensions ?? {}) as Record<string, unknown>;
      return rebuild(error, original.message, { ...ext, code: typeof ext.code === 'string' ? ext.code : 'invalid_input' });
    }
    // Variable coercion failures come before execution (no path) and wrap the
    // scalar's own complaint about the client's value.
    if (!error.path) return rebuild(error, error.message, { code: 'invalid_query' });
    const id = randomUUID();
    logger.error({ err: original, error_id: id, path: error.path?.join('.') }, 'unexpected error while executing a GraphQL operation');
    return rebuild(error, `Internal error (id ${id}); the server log has details`, { code: 'internal_error', error_id: id });
  };
}
