// What an object carries besides its bytes, as S3 takes it from request headers and gives it
// back: content type and the other representation headers, user metadata, tags, ETag, dates.
import { ApiError } from "../../protocol/errors.js";
import { decodeHeaderText, encodeHeaderText } from "../../protocol/s3/header-text.js";
import type { ObjectRow } from "../../store/meta/objects.js";
import { header, type S3Request } from "./request.js";

/** Representation headers S3 stores with an object and answers with on GET and HEAD. */
const STORED_HEADERS = ["cache-control", "content-disposition", "content-encoding", "content-language", "expires"] as const;
const MAX_METADATA_BYTES = 2048;
export const MAX_KEY_BYTES = 1024;
export const DEFAULT_CONTENT_TYPE = "binary/octet-stream";

export type Tags = [string, string][];

export interface ObjectAttributes {
  content_type: string;
  headers: string;
  metadata: string;
  tags: string;
}

export function checkKey(key: string): string {
  if (key === "") throw new ApiError("InvalidArgument", "An object key must not be empty.");
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) throw new ApiError("KeyTooLongError", "Your key is too long");
  return key;
}

/** Content-Type, the stored headers and x-amz-meta-* of a request that creates an object. */
export function attributesFrom(req: Pick<S3Request, "headers">): Omit<ObjectAttributes, "tags"> {
  const headers: Record<string, string> = {};
  for (const name of STORED_HEADERS) {
    let value = header(req, name);
    // aws-chunked describes the request's framing, not the object.
    if (name === "content-encoding" && value !== undefined)
      value = value
        .split(",")
        .map((v) => v.trim())
        .filter((v) => v !== "aws-chunked" && v !== "")
        .join(",");
    if (value) headers[name] = value;
  }
  const metadata: Record<string, string> = {};
  let metadataBytes = 0;
  for (const [name, value] of Object.entries(req.headers)) {
    if (!name.startsWith("x-amz-meta-") || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(",") : value;
    const short = name.slice("x-amz-meta-".length);
    metadata[short] = decodeHeaderText(text);
    metadataBytes += Buffer.byteLength(short) + Buffer.byteLength(text);
  }
  if (metadataBytes > MAX_METADATA_BYTES) throw new ApiError("MetadataTooLarge", "Your metadata headers exceed the maximum allowed metadata size");
  return { content_type: header(req, "content-type") || DEFAULT_CONTENT_TYPE, headers: JSON.stringify(headers), metadata: JSON.stringify(metadata) };
}

/** S3's object tag rules: at most 10, keys 1–128 and values 0–256 characters, keys unique. */
export function checkTags(tags: Tags): Tags {
  if (tags.length > 10) throw new ApiError("InvalidTag", "Object tags cannot be greater than 10");
  const seen = new Set<string>();
  for (const [key, value] of tags) {
    if (key.length < 1 || key.length > 128) throw new ApiError("InvalidTag", "The TagKey you have provided is invalid");
    if (value.length > 256) throw new ApiError("InvalidTag", "The TagValue you have provided is invalid");
    if (seen.has(key)) throw new ApiError("InvalidTag", "Cannot provide multiple Tags with the same key");
    seen.add(key);
  }
  return tags;
}

/** Tags from an x-amz-tagging header (a URL query string). */
export function tagsFromHeader(value: string | undefined): Tags {
  if (value === undefined || value === "") return [];
  return checkTags([...new URLSearchParams(value)]);
}

export const tagsOf = (row: Pick<ObjectRow, "tags">): Tags => JSON.parse(row.tags) as Tags;

/** The headers GET and HEAD answer an object with (before any range or response-* override). */
export function objectHeaders(row: ObjectRow): Record<string, string | number> {
  const headers: Record<string, string | number> = {
    "content-type": row.content_type,
    etag: row.etag,
    "last-modified": new Date(row.last_modified).toUTCString(),
    "accept-ranges": "bytes",
    ...(JSON.parse(row.headers) as Record<string, string>),
  };
  for (const [name, value] of Object.entries(JSON.parse(row.metadata) as Record<string, string | null>)) {
    if (value !== null) headers[`x-amz-meta-${name}`] = encodeHeaderText(value);
  }
  const tagCount = tagsOf(row).length;
  if (tagCount > 0) headers["x-amz-tagging-count"] = tagCount;
  return headers;
}

const unquote = (etag: string) => etag.trim().replace(/^W\//, "").replace(/^"|"$/g, "");

function etagMatches(row: Pick<ObjectRow, "etag">, list: string): boolean {
  return list.split(",").some((candidate) => candidate.trim() === "*" || unquote(candidate) === unquote(row.etag));
}

const seconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);
const httpDate = (value: string | undefined) => {
  if (value === undefined) return undefined;
  const time = Date.parse(value);
  return Number.isNaN(time) ? undefined : Math.floor(time / 1000);
};

/**
 * GET and HEAD's conditional headers, as S3 weighs them (RFC 7232): If-Match before
 * If-Unmodified-Since (412), If-None-Match before If-Modified-Since (304). For a copy's source
 * (`x-amz-copy-source-if-…`) every failure is 412.
 */
export function checkConditions(req: Pick<S3Request, "headers">, row: ObjectRow, prefix = ""): void {
  const get = (name: string) => header(req, `${prefix}${name}`);
  const failed = () => new ApiError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
  const notModified = () => (prefix ? failed() : new ApiError("NotModified", "Not Modified"));
  const modified = seconds(row.last_modified);
  const ifMatch = get("if-match");
  if (ifMatch !== undefined) {
    if (!etagMatches(row, ifMatch)) throw failed();
  } else {
    const since = httpDate(get("if-unmodified-since"));
    if (since !== undefined && modified > since) throw failed();
  }
  const ifNoneMatch = get("if-none-match");
  if (ifNoneMatch !== undefined) {
    if (etagMatches(row, ifNoneMatch)) throw notModified();
  } else {
    const since = httpDate(get("if-modified-since"));
    if (since !== undefined && modified <= since) throw notModified();
  }
}

/** PutObject's and CompleteMultipartUpload's conditional writes: If-None-Match: * and If-Match. */
export function writeCondition(req: Pick<S3Request, "headers">): ((previous: { etag: string } | undefined) => void) | undefined {
  const ifNoneMatch = header(req, "if-none-match");
  const ifMatch = header(req, "if-match");
  if (ifNoneMatch === undefined && ifMatch === undefined) return undefined;
  if (ifNoneMatch !== undefined && ifNoneMatch.trim() !== "*") throw new ApiError("NotImplemented", "If-None-Match on a write accepts only *.");
  return (previous) => {
    if (ifNoneMatch !== undefined && previous) throw new ApiError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
    if (ifMatch !== undefined) {
      if (!previous) throw new ApiError("NoSuchKey", "The specified key does not exist.");
      if (!etagMatches(previous, ifMatch)) throw new ApiError("PreconditionFailed", "At least one of the pre-conditions you specified did not hold");
    }
  };
}

/** A Range header's one range as [start, end) within `size`; undefined serves the whole object. */
export function parseRange(value: string | undefined, size: number): { start: number; end: number } | undefined {
  const match = value === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!match || (match[1] === "" && match[2] === "")) return undefined; // not one byte range: S3 ignores it
  const unsatisfiable = () => new ApiError("InvalidRange", "The requested range is not satisfiable");
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0 || size === 0) throw unsatisfiable();
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(match[1]);
  const last = match[2] === "" ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size) throw unsatisfiable();
  if (last < start) return undefined;
  return { start, end: last + 1 };
}
