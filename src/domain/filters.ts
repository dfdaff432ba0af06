// EC2's Filter.N.Name / Filter.N.Value.M semantics: filters AND together, values OR, and values
// may hold the wildcards `*` and `?` (escape them with a backslash).
import { ApiError } from "../protocol/errors.js";

export interface FilterInput {
  Name?: string;
  Values?: string[];
}

/** What a filter name reads from a row: one value or several (any may match). */
export type FieldReader<Row> = (row: Row) => string | readonly string[] | undefined;

export interface FilterSpec<Row> {
  fields: Record<string, FieldReader<Row>>;
  /** Tags of a row, for `tag:<key>`, `tag-key` and `tag-value`. */
  tags?: (row: Row) => ReadonlyMap<string, string> | undefined;
}

/** EC2's bounds on a request's filters (FilterLimitExceeded). */
export const FILTER_LIMITS = { values: 200, valueLength: 255 };

/** A piece of a pattern between two `*`: its characters, `undefined` where `?` stands. */
type Segment = (string | undefined)[];

/** Where `segment` matches `value` at `at`. */
function fitsAt(segment: Segment, value: string, at: number): boolean {
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c !== undefined && value[at + i] !== c) return false;
  }
  return true;
}

/** The first position from `from` on (and at most `last`) where `segment` matches, or -1. */
function find(segment: Segment, value: string, from: number, last: number): number {
  if (!segment.includes(undefined)) {
    const at = value.indexOf(segment.join(""), from);
    return at <= last ? at : -1;
  }
  for (let at = from; at <= last; at++) if (fitsAt(segment, value, at)) return at;
  return -1;
}

/**
 * A value pattern: `*` any run of characters, `?` any one, `\` escapes the next. Matched without
 * backtracking: the pieces between stars are placed left to right, each at its first fit, which
 * is right for these wildcards. (A regular expression backtracks: `*a*a*a*a*b` against a long run
 * of `a` took time growing with the value's length to the power of its stars.)
 */
function valueMatcher(pattern: string): (value: string) => boolean {
  if (!/[*?\\]/.test(pattern)) return (value) => value === pattern;
  const segments: Segment[] = [[]];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\" && i + 1 < pattern.length) segments.at(-1)!.push(pattern[++i]!);
    else if (c === "*") segments.push([]);
    else segments.at(-1)!.push(c === "?" ? undefined : c);
  }
  const head = segments[0]!;
  if (segments.length === 1) return (value) => value.length === head.length && fitsAt(head, value, 0);
  const tail = segments.at(-1)!;
  const middle = segments.slice(1, -1).filter((segment) => segment.length > 0);
  return (value) => {
    const end = value.length - tail.length;
    if (end < head.length || !fitsAt(head, value, 0) || !fitsAt(tail, value, end)) return false;
    let at = head.length;
    for (const segment of middle) {
      const found = find(segment, value, at, end - segment.length);
      if (found < 0) return false;
      at = found + segment.length;
    }
    return true;
  };
}

/** FilterLimitExceeded unless the filters keep within EC2's bounds. */
function checkLimits(filters: readonly FilterInput[]): void {
  let values = 0;
  for (const filter of filters) {
    for (const value of filter.Values ?? []) {
      if (value.length > FILTER_LIMITS.valueLength) {
        throw new ApiError("FilterLimitExceeded", `The maximum length for a filter value is ${FILTER_LIMITS.valueLength} characters`);
      }
      if (++values > FILTER_LIMITS.values) {
        throw new ApiError("FilterLimitExceeded", `The maximum number of filter values specified on a single call is ${FILTER_LIMITS.values}`);
      }
    }
  }
}

const anyOf = (values: string | readonly string[] | undefined, match: (value: string) => boolean) =>
  values === undefined ? false : typeof values === "string" ? match(values) : values.some(match);

export function compileFilters<Row>(filters: readonly FilterInput[] | undefined, spec: FilterSpec<Row>): (row: Row) => boolean {
  if (!filters || filters.length === 0) return () => true;
  checkLimits(filters);
  const tests = filters.map((filter, index): ((row: Row) => boolean) => {
    const name = filter.Name;
    if (!name) throw new ApiError("MissingParameter", `The request must contain the parameter Filter.${index + 1}.Name`);
    const matchers = (filter.Values ?? []).map(valueMatcher);
    const matches = (value: string) => matchers.some((m) => m(value));
    const reader = spec.fields[name];
    if (reader) return (row) => anyOf(reader(row), matches);
    if (spec.tags) {
      const tags = spec.tags;
      if (name.startsWith("tag:")) {
        const key = name.slice(4);
        return (row) => {
          const value = tags(row)?.get(key);
          return value !== undefined && matches(value);
        };
      }
      if (name === "tag-key") return (row) => [...(tags(row)?.keys() ?? [])].some(matches);
      if (name === "tag-value") return (row) => [...(tags(row)?.values() ?? [])].some(matches);
    }
    throw new ApiError("InvalidParameterValue", `The filter '${name}' is invalid`);
  });
  return (row) => tests.every((test) => test(row));
}
