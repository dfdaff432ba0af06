// Durable tasks: one row each, its state and progress written as the work goes.
import type { MetaDb } from "./database.js";
import type { TaskTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type TaskRow = TaskTable;

export async function insertTask(db: MetaDb, row: TaskRow): Promise<void> {
  await db.insertInto("tasks").values(row).execute();
}

export function getTask(db: MetaDb, taskId: string): Promise<TaskRow | undefined> {
  return db.selectFrom("tasks").selectAll().where("task_id", "=", taskId).executeTakeFirst();
}

/** Tasks a stopped Kiln left running. */
export function runningTasks(db: MetaDb): Promise<TaskRow[]> {
  return db.selectFrom("tasks").selectAll().where("state", "=", "running").orderBy("created").execute();
}

export async function setTaskProgress(db: MetaDb, taskId: string, progress: number): Promise<void> {
  await db.updateTable("tasks").set({ progress, updated: new Date().toISOString() }).where("task_id", "=", taskId).where("state", "=", "running").execute();
}

export async function endTask(db: MetaDb, taskId: string, outcome: { state: "completed" | "failed"; failure?: string }): Promise<void> {
  await db
    .updateTable("tasks")
    .set({ state: outcome.state, failure: outcome.failure ?? null, progress: outcome.state === "completed" ? 100 : undefined, updated: new Date().toISOString() } as Partial<TaskRow>)
    .where("task_id", "=", taskId)
    .execute();
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
