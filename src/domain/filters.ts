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

function valueMatcher(pattern: string): (value: string) => boolean {
  if (!/[*?\\]/.test(pattern)) return (value) => value === pattern;
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "\\" && i + 1 < pattern.length) source += escapeRegExp(pattern[++i]!);
    else if (c === "*") source += "[\\s\\S]*";
    else if (c === "?") source += "[\\s\\S]";
    else source += escapeRegExp(c);
  }
  const regex = new RegExp(`^${source}$`);
  return (value) => regex.test(value);
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const anyOf = (values: string | readonly string[] | undefined, match: (value: string) => boolean) =>
  values === undefined ? false : typeof values === "string" ? match(values) : values.some(match);

export function compileFilters<Row>(filters: readonly FilterInput[] | undefined, spec: FilterSpec<Row>): (row: Row) => boolean {
  if (!filters || filters.length === 0) return () => true;
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
