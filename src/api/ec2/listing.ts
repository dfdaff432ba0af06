// The shape most Describe* actions share: the caller's rows (in id order), their tags, AWS's
// filters, then a page of MaxResults with a NextToken naming the last id returned.
import { compileFilters, type FilterInput, type FilterSpec } from "../../domain/filters.js";
import { requestedIds, uniqueIds } from "../../domain/ids.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { yieldToLoop } from "../../event-loop.js";
import { tagsOf } from "../../store/meta/tags.js";
import type { Action, ActionContext } from "./action.js";

export interface Tagged<Row> {
  row: Row;
  tags: ReadonlyMap<string, string>;
}

export interface ListingInput {
  Filters?: FilterInput[];
  MaxResults?: number;
  NextToken?: string;
}

/** Checks filters and MaxResults before anything runs (so DryRun sees the same errors). */
export function checkListing<Row>(input: ListingInput, fields: FilterSpec<Tagged<Row>>["fields"], bounds = { min: 5, max: 1000 }): void {
  pageSize(input.MaxResults, bounds);
  compileFilters(input.Filters, { fields, tags: (t) => t.tags });
}

export async function listPage<Row>(
  ctx: ActionContext,
  rows: readonly Row[],
  idOf: (row: Row) => string,
  input: ListingInput,
  fields: FilterSpec<Tagged<Row>>["fields"],
  bounds = { min: 5, max: 1000 },
): Promise<{ page: Tagged<Row>[]; nextToken?: string }> {
  const limit = pageSize(input.MaxResults, bounds);
  const after = decodeNextToken(input.NextToken, 1)?.[0];
  const matches = compileFilters(input.Filters, { fields, tags: (t: Tagged<Row>) => t.tags });
  const tags = await tagsOf(ctx.meta.db, ctx, rows.map(idOf));
  const page: Tagged<Row>[] = [];
  for (const row of rows) {
    await yieldToLoop();
    if (after !== undefined && idOf(row) <= after) continue;
    const tagged = { row, tags: tags.get(idOf(row)) ?? new Map<string, string>() };
    if (!matches(tagged)) continue;
    if (limit !== undefined && page.length === limit) return { page, nextToken: encodeNextToken([idOf(page[page.length - 1]!.row)]) };
    page.push(tagged);
  }
  return { page };
}

/** The ids of `ids` that no row of `rows` has, each once. */
export function missingIds<Row>(ids: readonly string[] | undefined, rows: readonly Row[], idOf: (row: Row) => string): string[] {
  const present = new Set(rows.map(idOf));
  return uniqueIds(ids ?? []).filter((id) => !present.has(id));
}

/** Every id of `ids` among `rows`, or the NotFound error for those missing (each named once). */
export function requireIds<Row>(ids: readonly string[] | undefined, rows: readonly Row[], idOf: (row: Row) => string, notFound: (ids: readonly string[]) => Error): void {
  const missing = missingIds(ids, rows, idOf);
  if (missing.length) throw notFound(missing);
}

export const tagList = (tags: ReadonlyMap<string, string>) => [...tags].map(([Key, Value]) => ({ Key, Value }));

/**
 * A Describe* action of the common kind: ids (each must exist for the caller), filters, a page.
 * `prepare` runs first (the default network, made on first use); `render` turns a page into the
 * output members.
 */
export function describeAction<Row, Input extends ListingInput, Out>(spec: {
  member: string;
  fields: FilterSpec<Tagged<Row>>["fields"];
  bounds?: { min: number; max: number };
  prepare?: (ctx: ActionContext) => Promise<void>;
  ids: (input: Input) => string[] | undefined;
  list: (ctx: ActionContext, ids: readonly string[] | undefined) => Promise<Row[]>;
  idOf: (row: Row) => string;
  notFound: (ids: readonly string[]) => Error;
  render: (ctx: ActionContext, page: Tagged<Row>[]) => Out[] | Promise<Out[]>;
}): Action<Input> {
  return {
    check: (_ctx, input) => checkListing(input, spec.fields, spec.bounds),
    async run(ctx, input) {
      await spec.prepare?.(ctx);
      const ids = requestedIds(spec.ids(input));
      const rows = await spec.list(ctx, ids);
      requireIds(ids, rows, spec.idOf, spec.notFound);
      const { page, nextToken } = await listPage(ctx, rows, spec.idOf, input, spec.fields, spec.bounds);
      return { [spec.member]: await spec.render(ctx, page), NextToken: nextToken };
    },
  };
}
