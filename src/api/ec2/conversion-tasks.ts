// What import and export tasks share on the wire: starting one (the user's record and the
// durable work, written together), listing an account's tasks page by page, and cancelling one.
import type { Tag } from "@aws-sdk/client-ec2";
import { requestedIds } from "../../domain/ids.js";
import { ApiError } from "../../protocol/errors.js";
import {
  conversionTasksOf,
  getConversionTask,
  insertConversionTask,
  updateConversionTask,
  type ConversionKind,
  type ConversionTaskRow,
} from "../../store/meta/conversion-tasks.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import { atomically } from "../../store/meta/database.js";
import { insertTask, newTaskRow } from "../../store/meta/tasks.js";
import type { ActionContext } from "./action.js";
import { describePage, taggedFilters, withTags, type ListingInput } from "./listing.js";
import { TAG_LIMITS } from "./tag-specifications.js";

export type Tags = ReadonlyMap<string, string> | undefined;

export const tagList = (tags: Tags): Tag[] => [...(tags ?? new Map<string, string>())].map(([Key, Value]) => ({ Key, Value }));

/** A task's tags, for the response that starts it. */
export async function tagsOfTask(ctx: ActionContext, taskId: string): Promise<Tags> {
  return (await tagsOf(ctx.meta.db, ctx, [taskId])).get(taskId);
}

/** Writes the task's two rows together (what users see, and the durable work), tags it and starts it. */
export async function startConversionTask(
  ctx: ActionContext,
  start: {
    taskId: string;
    kind: ConversionKind;
    clientToken: string | undefined;
    statusMessage: string;
    progress: string;
    details: unknown;
    tagType: string;
    tags: readonly { key: string; value: string }[];
  },
): Promise<ConversionTaskRow> {
  const now = new Date().toISOString();
  const row: ConversionTaskRow = {
    task_id: start.taskId,
    account_id: ctx.accountId,
    region: ctx.region,
    kind: start.kind,
    client_token: start.clientToken ?? null,
    status: "active",
    status_message: start.statusMessage,
    progress: start.progress,
    details: JSON.stringify(start.details),
    created: now,
    updated: now,
  };
  const task = newTaskRow({ task_id: row.task_id, kind: start.kind, account_id: ctx.accountId, region: ctx.region });
  await atomically(ctx.meta.db, async (tx) => {
    await insertConversionTask(tx, row);
    await insertTask(tx, task);
  });
  if (start.tags.length) await putTags(ctx.meta.db, ctx, [{ id: row.task_id, type: start.tagType }], start.tags, TAG_LIMITS.perResource);
  await ctx.tasks.start(task);
  return row;
}

/** The rules of a Describe*Tasks request: `task-state` and tag filters, pages of up to `maxPage`. */
export const taskListing = (maxPage: number) => ({
  filters: taggedFilters<ConversionTaskRow>({ "task-state": (t) => t.row.status }),
  bounds: { min: 1, max: maxPage },
});

/**
 * One page of an account's tasks of a kind: by id (every id must exist) or all of them (ended
 * ones only within `retentionMs`, when given), filtered by `task-state` and tags.
 */
export async function describeConversionTasks<T>(
  ctx: ActionContext,
  query: { kind: ConversionKind; noun: string; ids: readonly string[] | undefined; input: ListingInput; maxPage: number; retentionMs?: number },
  toTask: (row: ConversionTaskRow, tags: Tags) => T,
): Promise<{ tasks: T[]; nextToken?: string }> {
  const ids = requestedIds(query.ids);
  const since = ids === undefined && query.retentionMs !== undefined ? new Date(Date.now() - query.retentionMs).toISOString() : undefined;
  const shown = (row: ConversionTaskRow) => since === undefined || row.status === "active" || row.status === "deleting" || row.updated >= since;
  const { page, nextToken } = await describePage(query.input, ids, taskListing(query.maxPage), {
    read: (q) => conversionTasksOf(ctx.meta.db, ctx, query.kind, q),
    idOf: (row) => row.task_id,
    describe: async (rows) => (await withTags(ctx, (row: ConversionTaskRow) => row.task_id)(rows)).map((t) => (shown(t.row) ? t : undefined)),
    notFound: (missing) => new ApiError("InvalidConversionTaskId", `The ${query.noun} task ID '${missing[0]}' does not exist`),
  });
  return { tasks: page.map((t) => toTask(t.row, t.tags.size ? t.tags : undefined)), nextToken };
}

/** Ids of a Describe*Tasks request must all have the kind's form. */
export function checkTaskIds(ids: readonly string[] | undefined, pattern: RegExp, expecting: string): void {
  for (const id of ids ?? []) {
    if (!pattern.test(id)) throw new ApiError("InvalidConversionTaskId.Malformed", `Invalid id: "${id}" (expecting ${expecting})`);
  }
}

/** The caller's active task `id` (of an id `pattern` names), or EC2's error for why it cannot be cancelled. */
export async function cancellableTask(ctx: ActionContext, id: string, pattern: RegExp, noun: string, expecting: string): Promise<ConversionTaskRow> {
  if (!pattern.test(id)) throw new ApiError("InvalidConversionTaskId.Malformed", `Invalid id: "${id}" (expecting ${expecting})`);
  const row = await getConversionTask(ctx.meta.db, id);
  if (!row || row.account_id !== ctx.accountId || row.region !== ctx.region)
    throw new ApiError("InvalidConversionTaskId", `The ${noun} task ID '${id}' does not exist`);
  if (row.status !== "active") throw new ApiError("IncorrectState", `The ${noun} task ${id} is ${row.status}; only an active task can be cancelled.`);
  return row;
}

/** Marks the task deleting and stops its work, which then undoes itself and ends deleted. */
export async function cancelConversionTask(ctx: ActionContext, row: ConversionTaskRow, message: string, noun: string): Promise<void> {
  if (!(await updateConversionTask(ctx.meta.db, row.task_id, { status: "deleting", status_message: message }, "active"))) {
    throw new ApiError("IncorrectState", `The ${noun} task ${row.task_id} is no longer active.`);
  }
  await ctx.tasks.cancel(row.task_id, message);
}
