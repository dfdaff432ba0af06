// Import and export tasks as their users see them: status, message, progress and the JSON
// details DescribeImport*Tasks and DescribeExportImageTasks answer from.
import type { ListQuery, MetaDb } from "./database.js";
import type { ConversionTaskTable } from "./schema.js";
import type { Scope } from "./tags.js";

export type ConversionTaskRow = ConversionTaskTable;
export type ConversionKind = ConversionTaskRow["kind"];

export async function insertConversionTask(db: MetaDb, row: ConversionTaskRow): Promise<void> {
  await db.insertInto("conversion_tasks").values(row).execute();
}

export function getConversionTask(db: MetaDb, taskId: string): Promise<ConversionTaskRow | undefined> {
  return db.selectFrom("conversion_tasks").selectAll().where("task_id", "=", taskId).executeTakeFirst();
}

export function conversionTaskByToken(db: MetaDb, scope: Scope, kind: ConversionKind, clientToken: string): Promise<ConversionTaskRow | undefined> {
  return db
    .selectFrom("conversion_tasks")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where("kind", "=", kind)
    .where("client_token", "=", clientToken)
    .executeTakeFirst();
}

/** An account's tasks of a kind in a region, by id, from after `after`. */
export function conversionTasksOf(db: MetaDb, scope: Scope, kind: ConversionKind, q: ListQuery = {}): Promise<ConversionTaskRow[]> {
  let query = db
    .selectFrom("conversion_tasks")
    .selectAll()
    .where("account_id", "=", scope.accountId)
    .where("region", "=", scope.region)
    .where("kind", "=", kind);
  if (q.ids) query = query.where("task_id", "in", q.ids.length ? q.ids : [""]);
  if (q.after) query = query.where("task_id", ">", q.after);
  if (q.limit !== undefined) query = query.limit(q.limit);
  return query.orderBy("task_id").execute();
}

export async function updateConversionTask(
  db: MetaDb,
  taskId: string,
  change: Partial<Pick<ConversionTaskRow, "status" | "status_message" | "progress" | "details">>,
  onlyIfStatus?: string,
): Promise<boolean> {
  let query = db
    .updateTable("conversion_tasks")
    .set({ ...change, updated: new Date().toISOString() })
    .where("task_id", "=", taskId);
  if (onlyIfStatus) query = query.where("status", "=", onlyIfStatus);
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

const PROGRESS_INTERVAL_MS = 1000;

/**
 * A task's progress reporter: writes the status message and percentage at most about once a
 * second, unless `force` (a new step, which users should see at once).
 */
export function conversionProgress(db: MetaDb, taskId: string): (statusMessage: string, percent: number, force?: boolean) => Promise<void> {
  let last = 0;
  return async (statusMessage, percent, force = false) => {
    const now = Date.now();
    if (!force && now - last < PROGRESS_INTERVAL_MS) return;
    last = now;
    await updateConversionTask(db, taskId, { status_message: statusMessage, progress: String(Math.min(99, Math.floor(percent))) }, "active");
  };
}
