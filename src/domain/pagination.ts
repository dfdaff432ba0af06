// MaxResults bounds and opaque NextTokens. A token is the position after the last row returned
// (keyset pagination), so pages stay stable while rows are added.
import { ApiError } from "../protocol/errors.js";

export function pageSize(maxResults: number | undefined, bounds: { min: number; max: number }): number | undefined {
  if (maxResults === undefined) return undefined;
  if (maxResults < bounds.min || maxResults > bounds.max) {
    throw new ApiError(
      "InvalidParameterValue",
      `Value (${maxResults}) for parameter maxResults is invalid. Expect a value between ${bounds.min} and ${bounds.max}.`,
    );
  }
  return maxResults;
}

export function encodeNextToken(position: readonly string[]): string {
  return Buffer.from(JSON.stringify(position)).toString("base64url");
}

export function decodeNextToken(token: string | undefined, length: number): string[] | undefined {
  if (token === undefined) return undefined;
  let position: unknown;
  try {
    position = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    position = undefined;
  }
  if (!Array.isArray(position) || position.length !== length || !position.every((p) => typeof p === "string")) {
    throw new ApiError("InvalidNextToken", `The token '${token}' is invalid.`);
  }
  return position;
}
