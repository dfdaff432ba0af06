// What import and export tasks share on the wire: starting one (the user's record and the
// durable work, written together), listing an account's tasks page by page, and cancelling one.
import type { Tag } from "@aws-sdk/client-ec2";
import { compileFilters, type FilterInput } from "../../domain/filters.js";
import { requestedIds } from "../../domain/ids.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { ApiError } from "../../protocol/errors.js";
import { conversionTasksOf, getConversionTask, insertConversionTask, updateConversionTask, type ConversionKind, type ConversionTaskRow } from "../../store/meta/conversion-tasks.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import { insertTask } from "../../store/meta/tasks.js";
import type { ActionContext } from "./action.js";
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
  const task = { task_id: row.task_id, kind: start.kind, account_id: ctx.accountId, region: ctx.region, state: "running" as const, progress: 0, params: "{}", failure: null, created: now, updated: now, owner: null, lease_until: null, cancel_requested: null };
  await ctx.meta.db.transaction().execute(async (tx) => {
    await insertConversionTask(tx, row);
    await insertTask(tx, task);
  });
  if (start.tags.length) await putTags(ctx.meta.db, ctx, [{ id: row.task_id, type: start.tagType }], start.tags, TAG_LIMITS.perResource);
  await ctx.tasks.start(task);
  return row;
}

/**
 * One page of an account's tasks of a kind: by id (every id must exist) or all of them (ended
 * ones only within `retentionMs`, when given), filtered by `task-state` and tags.
 */
export async function describeConversionTasks<T>(
  ctx: ActionContext,
  query: {
    kind: ConversionKind;
    noun: string;
    ids: readonly string[] | undefined;
    filters: readonly FilterInput[] | undefined;
    maxResults: number | undefined;
    nextToken: string | undefined;
    maxPage: number;
    retentionMs?: number;
  },
  toTask: (row: ConversionTaskRow, tags: Tags) => T,
): Promise<{ tasks: T[]; nextToken?: string }> {
  const limit = pageSize(query.maxResults, { min: 1, max: query.maxPage });
  const after = decodeNextToken(query.nextToken, 1)?.[0];
  const ids = requestedIds(query.ids);
  let rows = await conversionTasksOf(ctx.meta.db, ctx, query.kind, { ids, after });
  if (ids) {
    const found = new Set(rows.map((r) => r.task_id));
    const missing = ids.find((id) => !found.has(id));
    if (missing && after === undefined) throw new ApiError("InvalidConversionTaskId", `The ${query.noun} task ID '${missing}' does not exist`);
  } else if (query.retentionMs !== undefined) {
    const since = new Date(Date.now() - query.retentionMs).toISOString();
    rows = rows.filter((r) => r.status === "active" || r.status === "deleting" || r.updated >= since);
  }
  const tags = await tagsOf(ctx.meta.db, ctx, rows.map((r) => r.task_id));
  rows = rows.filter(compileFilters(query.filters, { fields: { "task-state": (r: ConversionTaskRow) => r.status }, tags: (r: ConversionTaskRow) => tags.get(r.task_id) }));
  const page = limit === undefined ? rows : rows.slice(0, limit);
  const more = limit !== undefined && rows.length > limit;
  return { tasks: page.map((row) => toTask(row, tags.get(row.task_id))), nextToken: more ? encodeNextToken([page[page.length - 1]!.task_id]) : undefined };
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
  if (!row || row.account_id !== ctx.accountId || row.region !== ctx.region) throw new ApiError("InvalidConversionTaskId", `The ${noun} task ID '${id}' does not exist`);
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
