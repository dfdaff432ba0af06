// Durable tasks: one row each, its state and progress written as the work goes.
import type { ExpressionBuilder } from "kysely";
import type { MetaDb } from "./database.js";
import type { MetaSchema, TaskTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type TaskRow = TaskTable;

/** A new task row: running, unowned (the runner claims it), with its kind's parameters. */
export function newTaskRow(given: Pick<TaskRow, "task_id" | "kind" | "account_id" | "region"> & { params?: unknown }): TaskRow {
  const now = new Date().toISOString();
  return {
    task_id: given.task_id,
    kind: given.kind,
    account_id: given.account_id,
    region: given.region,
    state: "running",
    progress: 0,
    params: JSON.stringify(given.params ?? {}),
    failure: null,
    created: now,
    updated: now,
    owner: null,
    lease_until: null,
    cancel_requested: null,
  };
}

export async function insertTask(db: MetaDb, row: TaskRow): Promise<void> {
  await db.insertInto("tasks").values(row).execute();
}

export function getTask(db: MetaDb, taskId: string): Promise<TaskRow | undefined> {
  return db.selectFrom("tasks").selectAll().where("task_id", "=", taskId).executeTakeFirst();
}

/** A running task `node` may take: nobody's, its own (from before a restart), or one whose lease ran out. */
const claimableBy = (node: string, now: number) => (eb: ExpressionBuilder<MetaSchema, "tasks">) =>
  eb.and([eb("state", "=", "running"), eb.or([eb("owner", "is", null), eb("owner", "=", node), eb("lease_until", "<", now)])]);

/** Running tasks `node` may take, oldest first. */
export function claimableTasks(db: MetaDb, node: string, now: number): Promise<TaskRow[]> {
  return db.selectFrom("tasks").selectAll().where(claimableBy(node, now)).orderBy("created").execute();
}

/** Makes `node` the task's owner until `until`, if it is running and nobody else holds a live lease. */
export async function claimTask(db: MetaDb, taskId: string, node: string, now: number, until: number): Promise<boolean> {
  const { numUpdatedRows } = await db
    .updateTable("tasks")
    .set({ owner: node, lease_until: until })
    .where("task_id", "=", taskId)
    .where(claimableBy(node, now))
    .executeTakeFirst();
  return numUpdatedRows > 0n;
}

/**
 * Extends `node`'s lease on a running task; false when it no longer holds it. Called in a task's
 * final transaction, it also keeps a node that lost the task from committing its output.
 */
export async function renewLease(db: MetaDb, taskId: string, node: string, until: number): Promise<boolean> {
  const { numUpdatedRows } = await db
    .updateTable("tasks")
    .set({ lease_until: until })
    .where("task_id", "=", taskId)
    .where("owner", "=", node)
    .where("state", "=", "running")
    .executeTakeFirst();
  return numUpdatedRows > 0n;
}

/** Any cancel asked of each of `taskIds`. */
export function cancelRequests(db: MetaDb, taskIds: readonly string[]): Promise<Pick<TaskRow, "task_id" | "cancel_requested">[]> {
  if (taskIds.length === 0) return Promise.resolve([]);
  return db.selectFrom("tasks").select(["task_id", "cancel_requested"]).where("task_id", "in", taskIds).execute();
}

/** Asks whichever node runs the task to cancel it. */
export async function requestCancel(db: MetaDb, taskId: string, message: string): Promise<void> {
  await db.updateTable("tasks").set({ cancel_requested: message }).where("task_id", "=", taskId).where("state", "=", "running").execute();
}

export async function setTaskProgress(db: MetaDb, taskId: string, node: string, progress: number): Promise<void> {
  await db
    .updateTable("tasks")
    .set({ progress, updated: new Date().toISOString() })
    .where("task_id", "=", taskId)
    .where("owner", "=", node)
    .where("state", "=", "running")
    .execute();
}

/** Ends a task `node` runs; false when another node has taken it over. */
export async function endTask(db: MetaDb, taskId: string, node: string, outcome: { state: "completed" | "failed"; failure?: string }): Promise<boolean> {
  const { numUpdatedRows } = await db
    .updateTable("tasks")
    .set({
      state: outcome.state,
      failure: outcome.failure ?? null,
      progress: outcome.state === "completed" ? 100 : undefined,
      updated: new Date().toISOString(),
      lease_until: null,
    } as Partial<TaskRow>)
    .where("task_id", "=", taskId)
    .where("owner", "=", node)
    .where("state", "=", "running")
    .executeTakeFirst();
  return numUpdatedRows > 0n;
}

/** An account's tasks of a kind in a region, newest first, started after `since`. */
export function tasksOf(db: MetaDb, scope: Scope, kind: string, since: string): Promise<TaskRow[]> {
  return db
    .selectFrom("tasks")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where("kind", "=", kind)
    .where("created", ">=", since)
    .orderBy("created", "desc")
    .orderBy("task_id")
    .execute();
}
