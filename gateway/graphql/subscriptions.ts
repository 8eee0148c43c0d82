/**
 * GraphQL subscriptions over LISTEN/NOTIFY.
 *
 * Triggers NOTIFY a small JSON payload on `bastion:run:<run_id>` (runs and
 * run events), `bastion:job:<job_id>:snapshots` (snapshot index rows),
 * `bastion:run:<run_id>:delete` and `bastion:run:<run_id>:cleanup` (queue
 * tasks and their events; those triggers come with the migrations that own
 * the tables). Each subscription field listens on one topic; every event
 * re-reads the changed rows through PostGraphile with the subscriber's role,
 * so row-level security decides what is delivered, and the payload never
 * carries data the reader could not query.
 *
 * Task tables that do not exist in this database yet (a later migration)
 * still get their subscription field; the task and event fields appear once
 * their tables do (the schema is built from the live database at start).
 */
import { jsonParse } from 'postgraphile/@dataplan/json';
import { context, lambda, listen, type Step } from 'postgraphile/grafast';
import { extendSchema, gql } from 'postgraphile/utils';

/** NOTIFY topic names (the SQL side writes them in bastion_private.notify_change). */
export const TOPICS = {
  run: (runId: string) => `bastion:run:${runId}`,
  jobSnapshots: (jobId: string) => `bastion:job:${jobId}:snapshots`,
  runDelete: (runId: string) => `bastion:run:${runId}:delete`,
  runCleanup: (runId: string) => `bastion:run:${runId}:cleanup`,
} as const;

type AnyResource = { codec: { extensions?: { pg?: { schemaName?: string; name?: string } } }; parameters?: unknown; get(spec: Record<string, Step>): Step };

interface EventStep extends Step {
  get(key: string): Step;
}

/** The plugin adding `runChanged`, `snapshotChanged`, `deleteTaskChanged` and `cleanupTaskChanged`. */
export const BastionSubscriptionsPlugin = extendSchema((build) => {
  const resources = Object.values(build.input.pgRegistry.pgResources) as unknown as AnyResource[];
  const table = (name: string) => resources.find((r) => !r.parameters && r.codec.extensions?.pg?.schemaName === 'bastion' && r.codec.extensions?.pg?.name === name);
  const typeName = (r: AnyResource): string => build.inflection.tableType(r.codec as never);
  const runs = table('runs');
  const runEvents = table('run_events');
  const artifacts = table('run_artifacts');
  const deleteTasks = table('artifact_delete_tasks');
  const deleteEvents = table('artifact_delete_events');
  const cleanupTasks = table('incomplete_cleanup_tasks');
  const cleanupEvents = table('incomplete_cleanup_events');
  if (!runs || !runEvents || !artifacts) throw new Error('BastionSubscriptionsPlugin: bastion.runs, run_events or run_artifacts is missing from the schema');

  const taskFields = (tasks: AnyResource | undefined, events: AnyResource | undefined) =>
    [tasks ? `"""The task after the change (null once deleted)."""\n  task: ${typeName(tasks)}` : '', events ? `"""The event, when the change is a new event."""\n  event: ${typeName(events)}` : ''].filter(Boolean).join('\n  ');

  const listenOn = (topic: (id: string) => string, argName: string) =>
    function subscribePlan(_$root: Step, fieldArgs: { getRaw(name: string): Step }) {
      const $topic = lambda(fieldArgs.getRaw(argName), (id: string) => topic(id));
      return listen(context().get('pgSubscriber') as never, $topic, jsonParse);
    };
  const identity = ($event: Step) => $event;
  const str = (key: string) => ($e: EventStep) => $e.get(key);
  const runIdOf = ($e: EventStep) => lambda([$e.get('run_id'), $e.get('id')], ([a, b]) => (a ?? b) as string);
  const rowBy = (r: AnyResource, spec: (e: EventStep) => Record<string, Step>) => ($e: EventStep) => r.get(spec($e));

  const taskPlans = (tasks: AnyResource | undefined, events: AnyResource | undefined) => ({
    table: str('table'),
    op: str('op'),
    runId: runIdOf,
    seq: str('seq'),
    status: str('status'),
    ...(tasks ? { task: rowBy(tasks, ($e) => ({ run_id: runIdOf($e) })) } : {}),
    ...(events ? { event: rowBy(events, ($e) => ({ run_id: runIdOf($e), seq: $e.get('seq') })) } : {}),
  });

  return {
    typeDefs: gql`
      """A change to a run or a new run event (topic bastion:run:<run_id>)."""
      type RunChange {
        """Table that changed: runs or run_events."""
        table: String!
        """insert, update or delete."""
        op: String!
        runId: UUID!
        """Run status after the change (runs only)."""
        status: String
        """Event number (run_events only)."""
        seq: Int
        """Event kind (run_events only)."""
        kind: String
        """The run after the change."""
        run: ${typeName(runs)}
        """The new event (run_events only)."""
        event: ${typeName(runEvents)}
      }

      """A change to a snapshot index row of a job (topic bastion:job:<job_id>:snapshots)."""
      type SnapshotChange {
        table: String!
        op: String!
        jobId: UUID!
        runId: UUID!
        """Snapshot status after the change."""
        status: String
        """The snapshot after the change (null once its row is gone)."""
        snapshot: ${typeName(artifacts)}
      }

      """A change to the delete task of a snapshot, or a new event of it (topic bastion:run:<run_id>:delete)."""
      type DeleteTaskChange {
        table: String!
        op: String!
        runId: UUID!
        seq: Int
        status: String
        ${taskFields(deleteTasks, deleteEvents)}
      }

      """A change to the incomplete-cleanup task of a run, or a new event of it (topic bastion:run:<run_id>:cleanup)."""
      type CleanupTaskChange {
        table: String!
        op: String!
        runId: UUID!
        seq: Int
        status: String
        ${taskFields(cleanupTasks, cleanupEvents)}
      }

      extend type Subscription {
        """Status, progress and events of one run."""
        runChanged(runId: UUID!): RunChange
        """Snapshots of one job appearing, changing status, pinned, deleted."""
        snapshotChanged(jobId: UUID!): SnapshotChange
        """The delete task of one snapshot and its events."""
        deleteTaskChanged(runId: UUID!): DeleteTaskChange
        """The incomplete-cleanup task of one run and its events."""
        cleanupTaskChanged(runId: UUID!): CleanupTaskChange
      }
    `,
    objects: {
      Subscription: {
        plans: {
          runChanged: { subscribePlan: listenOn(TOPICS.run, 'runId'), plan: identity },
          snapshotChanged: { subscribePlan: listenOn(TOPICS.jobSnapshots, 'jobId'), plan: identity },
          deleteTaskChanged: { subscribePlan: listenOn(TOPICS.runDelete, 'runId'), plan: identity },
          cleanupTaskChanged: { subscribePlan: listenOn(TOPICS.runCleanup, 'runId'), plan: identity },
        },
      },
      RunChange: {
        plans: {
          table: str('table'),
          op: str('op'),
          runId: runIdOf,
          status: str('status'),
          seq: str('seq'),
          kind: str('kind'),
          run: rowBy(runs, ($e) => ({ id: runIdOf($e) })),
          event: rowBy(runEvents, ($e) => ({ run_id: runIdOf($e), seq: $e.get('seq') })),
        },
      },
      SnapshotChange: {
        plans: {
          table: str('table'),
          op: str('op'),
          jobId: str('job_id'),
          runId: str('run_id'),
          status: str('status'),
          snapshot: rowBy(artifacts, ($e) => ({ run_id: $e.get('run_id') })),
        },
      },
      DeleteTaskChange: { plans: taskPlans(deleteTasks, deleteEvents) },
      CleanupTaskChange: { plans: taskPlans(cleanupTasks, cleanupEvents) },
    },
  } as never;
}, 'BastionSubscriptionsPlugin');
