// A request's target as every front door reads it: the path, and the query's pairs decoded.
export interface ParsedUrl {
  path: string;
  pairs: [string, string][];
}

export function parseUrl(raw: string): ParsedUrl {
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  return { path, pairs: q < 0 ? [] : [...new URLSearchParams(raw.slice(q + 1))] };
}
