// The one Describe* path. Every Describe* action checks its request with `checkDescribe` and
// answers with `describePage`: the caller's rows in id order, read a batch at a time (in SQL, for
// the tables that grow), each described once (tags and the like read for the whole batch), AWS's
// filters applied, and a page of MaxResults whose NextToken names the last id returned.
import { compileFilters, type FilterInput, type FilterSpec } from "../../domain/filters.js";
import { requestedIds, uniqueIds } from "../../domain/ids.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { yieldToLoop } from "../../event-loop.js";
import { ApiError } from "../../protocol/errors.js";
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

/** EC2's usual MaxResults bounds (some actions allow fewer). */
export const PAGE_BOUNDS = { min: 5, max: 1000 };

/** What a Describe* request is checked against before anything runs (so DryRun sees the same errors). */
export interface ListingRules<Described> {
  filters: FilterSpec<Described>;
  bounds?: { min: number; max: number };
  /** Checks one requested id's form (InvalidXID.Malformed). */
  checkId?: (id: string) => unknown;
  /** The id list's name on the wire (`imagesSet`): EC2 refuses it with MaxResults. */
  idsParameter?: string;
  /** MaxResults' name as EC2's message gives it (`maxResults` unless said). */
  maxResultsParameter?: string;
}

export function checkDescribe<Described>(input: ListingInput, ids: readonly string[] | undefined, rules: ListingRules<Described>): void {
  if (rules.checkId) for (const id of ids ?? []) rules.checkId(id);
  if (rules.idsParameter && ids?.length && input.MaxResults !== undefined) {
    throw new ApiError(
      "InvalidParameterCombination",
      `The parameter ${rules.idsParameter} cannot be used with the parameter ${rules.maxResultsParameter ?? "maxResults"}`,
    );
  }
  pageSize(input.MaxResults, rules.bounds ?? PAGE_BOUNDS);
  compileFilters(input.Filters, rules.filters);
}

/** Where a Describe* action's rows come from. */
export interface RowSource<Row, Described> {
  /**
   * The caller's rows in id order: those of `ids` when given, those after `after`, at most
   * `limit` of them (all when undefined).
   */
  read(q: { ids?: readonly string[]; after?: string; limit?: number }): Promise<readonly Row[]>;
  idOf(row: Row): string;
  /** Each row as the filters and the answer see it, read for the whole batch at once; undefined leaves a row out. */
  describe(rows: readonly Row[]): Promise<readonly (Described | undefined)[]>;
  /** The error for requested ids the caller has no row for (each named once). */
  notFound(ids: readonly string[]): Error;
  /** The most rows one read returns when the request sets no MaxResults (unbounded when unset). */
  readLimit?: number;
}

/** Rows described between two asks for a turn of the event loop (asking costs more than a plain row). */
const ROWS_BETWEEN_TURNS = 16;

/**
 * A page of described rows that the filters keep. Rows are read a batch of one more than the page
 * at a time (rows left out or filtered away mean more may be needed), so a page costs about its
 * own size, whatever the table's.
 */
export async function describePage<Row, Described>(
  input: ListingInput,
  ids: readonly string[] | undefined,
  rules: ListingRules<Described>,
  source: RowSource<Row, Described>,
): Promise<{ page: Described[]; nextToken?: string }> {
  const limit = pageSize(input.MaxResults, rules.bounds ?? PAGE_BOUNDS);
  const matches = compileFilters(input.Filters, rules.filters);
  // Requested ids are read at once (the request bounds them), so each can be checked.
  const batch = ids ? undefined : limit === undefined ? source.readLimit : limit + 1;
  let after = decodeNextToken(input.NextToken, 1)?.[0];
  const page: Described[] = [];
  let lastId: string | undefined;
  for (;;) {
    const rows = await source.read({ ids, after, limit: batch });
    // Requested ids at or before the token's position were on an earlier page, not missing.
    if (ids) requireIds(after === undefined ? ids : ids.filter((id) => id > after!), rows, source.idOf, source.notFound);
    const described = await source.describe(rows);
    for (let i = 0; i < described.length; i++) {
      if (i % ROWS_BETWEEN_TURNS === 0) {
        const turn = yieldToLoop();
        if (turn) await turn;
      }
      const item = described[i];
      if (item === undefined || !matches(item)) continue;
      if (limit !== undefined && page.length === limit) return { page, nextToken: encodeNextToken([lastId!]) };
      page.push(item);
      lastId = source.idOf(rows[i]!);
    }
    if (batch === undefined || rows.length < batch) return { page };
    after = source.idOf(rows[rows.length - 1]!);
  }
}

/**
 * A RowSource over rows already in hand: for answers computed, or lists short enough to read
 * whole. A page continues after the row the token names (wherever the list keeps it); a token
 * whose row is gone continues after the ids that sort before it.
 */
export function rowsInHand<Row, Described = Row>(
  rows: readonly Row[],
  idOf: (row: Row) => string,
  // Rows that are their own description (answers computed whole) need none.
  describe: RowSource<Row, Described>["describe"] = async (rows) => rows as unknown as Described[],
  notFound: (ids: readonly string[]) => Error = (missing) => new ApiError("InvalidParameterValue", `Unknown ids: ${missing.join(", ")}`),
): RowSource<Row, Described> {
  return {
    read: async ({ ids, after, limit }) => {
      const wanted = ids && new Set(ids);
      const named = after === undefined ? -1 : rows.findIndex((row) => idOf(row) === after);
      const following = named >= 0 ? rows.slice(named + 1) : rows.filter((row) => after === undefined || idOf(row) > after);
      const kept = wanted ? following.filter((row) => wanted.has(idOf(row))) : following;
      return limit === undefined ? kept : kept.slice(0, limit);
    },
    idOf,
    describe,
    notFound,
  };
}

/** Rows with their tags: how most resources are described. */
export function withTags<Row>(ctx: ActionContext, idOf: (row: Row) => string): (rows: readonly Row[]) => Promise<Tagged<Row>[]> {
  return async (rows) => {
    const tags = await tagsOf(ctx.meta.db, ctx, rows.map(idOf));
    return rows.map((row) => ({ row, tags: tags.get(idOf(row)) ?? new Map<string, string>() }));
  };
}

/** A page of tagged rows already in hand (in id order), filtered. */
export function listPage<Row>(
  ctx: ActionContext,
  rows: readonly Row[],
  idOf: (row: Row) => string,
  input: ListingInput,
  fields: FilterSpec<Tagged<Row>>["fields"],
  bounds = PAGE_BOUNDS,
): Promise<{ page: Tagged<Row>[]; nextToken?: string }> {
  return describePage(input, undefined, { filters: taggedFilters(fields), bounds }, rowsInHand(rows, idOf, withTags(ctx, idOf)));
}

/** Checks filters and MaxResults of a listing of tagged rows. */
export function checkListing<Row>(input: ListingInput, fields: FilterSpec<Tagged<Row>>["fields"], bounds = PAGE_BOUNDS): void {
  checkDescribe(input, undefined, { filters: taggedFilters(fields), bounds });
}

export const taggedFilters = <Row>(fields: FilterSpec<Tagged<Row>>["fields"]): FilterSpec<Tagged<Row>> => ({ fields, tags: (t) => t.tags });

/** The ids of `ids` that no row of `rows` has, each once. */
export function missingIds<Row>(ids: readonly string[] | undefined, rows: readonly Row[], idOf: (row: Row) => string): string[] {
  const present = new Set(rows.map(idOf));
  return uniqueIds(ids ?? []).filter((id) => !present.has(id));
}

/** Every id of `ids` among `rows`, or the NotFound error for those missing (each named once). */
export function requireIds<Row>(
  ids: readonly string[] | undefined,
  rows: readonly Row[],
  idOf: (row: Row) => string,
  notFound: (ids: readonly string[]) => Error,
): void {
  const missing = missingIds(ids, rows, idOf);
  if (missing.length) throw notFound(missing);
}

export const tagList = (tags: ReadonlyMap<string, string>) => [...tags].map(([Key, Value]) => ({ Key, Value }));

/**
 * A Describe* action of the common kind: ids (each must exist for the caller), filters on the
 * tagged rows, a page. `prepare` runs first (the default network, made on first use); `render`
 * turns a page into the output members.
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
  const rules = { filters: taggedFilters(spec.fields), bounds: spec.bounds };
  return {
    check: (_ctx, input) => checkDescribe(input, undefined, rules),
    async run(ctx, input) {
      await spec.prepare?.(ctx);
      const ids = requestedIds(spec.ids(input));
      const rows = await spec.list(ctx, ids);
      const { page, nextToken } = await describePage(input, ids, rules, rowsInHand(rows, spec.idOf, withTags(ctx, spec.idOf), spec.notFound));
      return { [spec.member]: await spec.render(ctx, page), NextToken: nextToken };
    },
  };
}
