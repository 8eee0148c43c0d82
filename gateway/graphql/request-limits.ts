/**
 * Bounds on what one GraphQL operation may ask for, checked before it runs.
 *
 * PostGraphile has no built-in cost limits, so we bound the document
 * ourselves, in two places:
 * - a validation rule (graphql-js; its result is cached with the parsed
 *   document) for what the text alone decides: selection depth, aliases and
 *   the number of field selections, fragments expanded;
 * - {@link checkPagination}, run with the variables just before execution,
 *   for what they decide: every connection must ask for `first` or `last`
 *   between 0 and {@link LIMITS.maxPage}, and the rows all the connections
 *   together could return (page sizes multiplied down each path) must stay
 *   under {@link LIMITS.maxNodes} — GitHub's GraphQL API works the same way,
 *   so client authors know the rule.
 *
 * Introspection (`__schema`, `__type`) is in-memory and GraphiQL's own query
 * nests `ofType` nine levels deep, so its depth is bounded separately.
 */
import {
  GraphQLError,
  Kind,
  getNamedType,
  isInterfaceType,
  isObjectType,
  type ASTVisitor,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLNamedType,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValueNode,
} from 'graphql';

/** The limits (exported for docs and tests). */
export const LIMITS = {
  /** Deepest selection nesting outside introspection. */
  maxDepth: 10,
  /** Deepest selection nesting inside `__schema` / `__type`. */
  maxIntrospectionDepth: 16,
  /** Aliases per operation (aliases multiply work without nesting). */
  maxAliases: 30,
  /** Field selections per operation, fragments expanded. */
  maxFields: 1000,
  /** Largest `first` / `last`. */
  maxPage: 200,
  /** Largest number of rows all connections together may return. */
  maxNodes: 20_000,
} as const;

/** Extension code of the errors these checks raise. */
export type LimitCode = 'query_too_complex' | 'pagination_required';

function limitError(code: LimitCode, message: string, nodes?: readonly FieldNode[] | FieldNode): GraphQLError {
  return new GraphQLError(message, { nodes: nodes ?? null, extensions: { code } });
}

interface Counts {
  fields: number;
  aliases: number;
  depth: number;
  introspectionDepth: number;
}

function countSelections(
  set: SelectionSetNode,
  fragments: (name: string) => FragmentDefinitionNode | undefined,
  depth: number,
  inIntrospection: boolean,
  path: string[],
  counts: Counts,
): void {
  for (const sel of set.selections) {
    if (sel.kind === Kind.FIELD) {
      counts.fields++;
      if (sel.alias) counts.aliases++;
      const introspection = inIntrospection || sel.name.value === '__schema' || sel.name.value === '__type';
      const d = depth + 1;
      if (introspection) counts.introspectionDepth = Math.max(counts.introspectionDepth, d);
      else counts.depth = Math.max(counts.depth, d);
      if (counts.fields > LIMITS.maxFields || counts.depth > LIMITS.maxDepth + 1 || counts.introspectionDepth > LIMITS.maxIntrospectionDepth + 1) return;
      if (sel.selectionSet) countSelections(sel.selectionSet, fragments, d, introspection, path, counts);
    } else if (sel.kind === Kind.INLINE_FRAGMENT) {
      countSelections(sel.selectionSet, fragments, depth, inIntrospection, path, counts);
    } else {
      const name = sel.name.value;
      const fragment = fragments(name);
      // A cycle is reported by NoFragmentCyclesRule; do not loop on it.
      if (!fragment || path.includes(name)) continue;
      countSelections(fragment.selectionSet, fragments, depth, inIntrospection, [...path, name], counts);
    }
  }
}

/** Measure an operation (fragments expanded): field selections, aliases, depth. */
export function measureOperation(operation: OperationDefinitionNode, fragments: (name: string) => FragmentDefinitionNode | undefined): Counts {
  const counts: Counts = { fields: 0, aliases: 0, depth: 0, introspectionDepth: 0 };
  countSelections(operation.selectionSet, fragments, 0, false, [], counts);
  return counts;
}

/** graphql-js validation rule enforcing depth, alias and field-count limits. */
export function QueryComplexityRule(context: ValidationContext): ASTVisitor {
  return {
    OperationDefinition(node) {
      const c = measureOperation(node, (name) => context.getFragment(name) ?? undefined);
      const what = node.name ? `operation ${node.name.value}` : 'the operation';
      if (c.depth > LIMITS.maxDepth) context.reportError(limitError('query_too_complex', `${what} nests selections deeper than ${LIMITS.maxDepth} levels`));
      else if (c.introspectionDepth > LIMITS.maxIntrospectionDepth) context.reportError(limitError('query_too_complex', `${what} nests introspection deeper than ${LIMITS.maxIntrospectionDepth} levels`));
      if (c.aliases > LIMITS.maxAliases) context.reportError(limitError('query_too_complex', `${what} uses more than ${LIMITS.maxAliases} aliases`));
      if (c.fields > LIMITS.maxFields) context.reportError(limitError('query_too_complex', `${what} selects more than ${LIMITS.maxFields} fields`));
      return false;
    },
  };
}

/** The operation `operationName` selects (or the only one), or undefined. */
export function selectOperation(document: DocumentNode, operationName: string | null | undefined): OperationDefinitionNode | undefined {
  const ops = document.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  if (operationName) return ops.find((o) => o.name?.value === operationName);
  return ops.length === 1 ? ops[0] : undefined;
}

function argumentValue(value: ValueNode | undefined, operation: OperationDefinitionNode, variables: Readonly<Record<string, unknown>>): unknown {
  if (!value) return undefined;
  switch (value.kind) {
    case Kind.INT:
      return Number(value.value);
    case Kind.NULL:
      return null;
    case Kind.VARIABLE: {
      const name = value.name.value;
      if (Object.hasOwn(variables, name)) return variables[name];
      const def = operation.variableDefinitions?.find((v) => v.variable.name.value === name);
      return def?.defaultValue ? argumentValue(def.defaultValue, operation, {}) : undefined;
    }
    default:
      // Wrong literal types fail coercion later with graphql's own message.
      return Number.NaN;
  }
}

/**
 * Check the pagination of every connection in the operation against the
 * variables: `first` or `last` given, integer, 0…maxPage; and the product of
 * page sizes down each path summed under maxNodes. Returns the errors (empty
 * when the operation may run).
 */
export function checkPagination(schema: GraphQLSchema, document: DocumentNode, operationName: string | null | undefined, variables: Readonly<Record<string, unknown>> | null | undefined): GraphQLError[] {
  const operation = selectOperation(document, operationName);
  if (!operation) return [];
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  const vars = variables ?? {};
  const errors: GraphQLError[] = [];
  let nodes = 0;
  const root = operation.operation === 'query' ? schema.getQueryType() : operation.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();

  const walk = (set: SelectionSetNode, parent: GraphQLNamedType | null | undefined, multiplier: number, path: string[]): void => {
    for (const sel of set.selections) {
      if (errors.length >= 5) return;
      if (sel.kind === Kind.FIELD) {
        if (sel.name.value.startsWith('__') || !(isObjectType(parent) || isInterfaceType(parent))) continue;
        const def = parent.getFields()[sel.name.value];
        if (!def) continue;
        let childMultiplier = multiplier;
        if (def.args.some((a) => a.name === 'first')) {
          const arg = (n: string) => argumentValue(sel.arguments?.find((a) => a.name.value === n)?.value, operation, vars);
          const first = arg('first');
          const last = arg('last');
          const page = first ?? last;
          const field = sel.alias ? `${sel.alias.value} (${sel.name.value})` : sel.name.value;
          if (page === undefined || page === null) {
            errors.push(limitError('pagination_required', `${field}: give \`first\` or \`last\` (at most ${LIMITS.maxPage}) to page through this connection`, sel));
            continue;
          }
          for (const [name, v] of [['first', first], ['last', last]] as const) {
            if (v === undefined || v === null) continue;
            if (typeof v !== 'number' || !Number.isInteger(v)) continue; // coercion reports it
            if (v < 0 || v > LIMITS.maxPage) errors.push(limitError('pagination_required', `${field}: \`${name}\` must be between 0 and ${LIMITS.maxPage}, got ${v}`, sel));
          }
          const size = typeof page === 'number' && Number.isFinite(page) ? Math.max(0, Math.min(page, LIMITS.maxPage)) : LIMITS.maxPage;
          nodes += multiplier * size;
          childMultiplier = multiplier * Math.max(size, 1);
        }
        if (sel.selectionSet) walk(sel.selectionSet, getNamedType(def.type), childMultiplier, path);
      } else if (sel.kind === Kind.INLINE_FRAGMENT) {
        walk(sel.selectionSet, sel.typeCondition ? schema.getType(sel.typeCondition.name.value) : parent, multiplier, path);
      } else {
        const f = fragments.get(sel.name.value);
        if (!f || path.includes(f.name.value)) continue;
        walk(f.selectionSet, schema.getType(f.typeCondition.name.value), multiplier, [...path, f.name.value]);
      }
    }
  };
  walk(operation.selectionSet, root, 1, []);
  if (errors.length === 0 && nodes > LIMITS.maxNodes) {
    errors.push(limitError('query_too_complex', `the operation could return up to ${nodes} rows across its connections (limit ${LIMITS.maxNodes}); ask for smaller pages`));
  }
  return errors;
}
