// The shape most Describe* actions share: the caller's rows (in id order), their tags, AWS's
// filters, then a page of MaxResults with a NextToken naming the last id returned.
import { compileFilters, type FilterInput, type FilterSpec } from "../../domain/filters.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { tagsOf } from "../../store/meta/tags.js";
import type { ActionContext } from "./action.js";

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
    if (after !== undefined && idOf(row) <= after) continue;
    const tagged = { row, tags: tags.get(idOf(row)) ?? new Map<string, string>() };
    if (!matches(tagged)) continue;
    if (limit !== undefined && page.length === limit) return { page, nextToken: encodeNextToken([idOf(page[page.length - 1]!.row)]) };
    page.push(tagged);
  }
  return { page };
}

export const tagList = (tags: ReadonlyMap<string, string>) => [...tags].map(([Key, Value]) => ({ Key, Value }));
