// ListObjectsV2 and ListObjects: keys in UTF-8 byte order (as the metadata store sorts them),
// filtered by prefix, rolled up at a delimiter into CommonPrefixes, a page at a time.
import { ApiError } from "../../protocol/errors.js";
import { s3Xml, type XmlElements } from "../../protocol/s3/wire.js";
import { objectsAfter, type ObjectRow } from "../../store/meta/objects.js";
import { ownBucket } from "./buckets.js";
import { ownerOf } from "./owner.js";
import { pageSizeOf, type S3Request, type S3Response } from "./request.js";

const BATCH = 1000;
/** The highest code point: a bound above every key that starts with a given prefix. */
const MAX_CHAR = String.fromCodePoint(0x10ffff);

interface Page {
  entries: ({ kind: "object"; row: ObjectRow } | { kind: "prefix"; prefix: string })[];
  truncated: boolean;
  /** The last key or common prefix returned, where the next page begins after. */
  last?: string;
}

/** Keys after `after` under `prefix`, rolled up at `delimiter`, at most `maxKeys` entries. */
export async function listPage(req: S3Request, options: { prefix: string; delimiter: string; after: string; maxKeys: number }): Promise<Page> {
  const { prefix, delimiter, maxKeys } = options;
  const page: Page = { entries: [], truncated: false };
  let bound: { after?: string; from?: string } = options.after >= prefix ? { after: options.after } : { from: prefix };
  // Resuming after a rolled-up prefix skips every key beneath it.
  if (
    delimiter &&
    options.after.length > prefix.length &&
    options.after.startsWith(prefix) &&
    options.after.indexOf(delimiter, prefix.length) === options.after.length - delimiter.length
  ) {
    bound = { from: options.after + MAX_CHAR };
  }
  for (;;) {
    const rows = await objectsAfter(req.ctx.meta.db, req.bucket, bound, BATCH);
    let skipped = false;
    for (const row of rows) {
      // Rows begin at or after the prefix: the first that does not start with it ends the listing.
      if (!row.key.startsWith(prefix)) return page;
      if (page.entries.length === maxKeys) {
        page.truncated = true;
        return page;
      }
      const cut = delimiter ? row.key.indexOf(delimiter, prefix.length) : -1;
      if (cut >= 0) {
        const common = row.key.slice(0, cut + delimiter.length);
        page.entries.push({ kind: "prefix", prefix: common });
        page.last = common;
        bound = { from: common + MAX_CHAR };
        skipped = true;
        break;
      }
      page.entries.push({ kind: "object", row });
      page.last = row.key;
      bound = { after: row.key };
    }
    if (!skipped && rows.length < BATCH) return page;
  }
}

/** With encoding-type=url, S3 URL-encodes the keys and prefixes it answers with. */
function encoder(req: S3Request): (value: string) => string {
  const type = req.query.get("encoding-type");
  if (type === undefined) return (value) => value;
  if (type !== "url") throw new ApiError("InvalidArgument", "Invalid Encoding Method specified in Request");
  return (value) => encodeURIComponent(value).replace(/%2F/g, "/");
}

function contents(row: ObjectRow, encode: (value: string) => string, owner?: XmlElements): XmlElements {
  return {
    Key: encode(row.key),
    LastModified: row.last_modified,
    ETag: row.etag,
    ChecksumAlgorithm: row.checksum_algorithm ?? undefined,
    ChecksumType: row.checksum_type ?? undefined,
    Size: row.size,
    Owner: owner,
    StorageClass: "STANDARD",
  };
}

export async function listObjectsV2(req: S3Request): Promise<S3Response> {
  await ownBucket(req.ctx, req.bucket);
  const prefix = req.query.get("prefix") ?? "";
  const delimiter = req.query.get("delimiter") ?? "";
  const startAfter = req.query.get("start-after");
  const token = req.query.get("continuation-token");
  let after = startAfter ?? "";
  if (token !== undefined) {
    const decoded = Buffer.from(token, "base64url").toString("utf8");
    if (token === "" || !decoded.startsWith("k:")) throw new ApiError("InvalidArgument", "The continuation token provided is incorrect");
    after = decoded.slice(2);
  }
  const maxKeys = pageSizeOf(req, "max-keys");
  const page = await listPage(req, { prefix, delimiter, after, maxKeys });
  const encode = encoder(req);
  const owner = req.query.get("fetch-owner") === "true" ? ownerOf(req.ctx.accountId) : undefined;
  return {
    xml: s3Xml("ListBucketResult", {
      Name: req.bucket,
      Prefix: encode(prefix),
      Delimiter: delimiter ? encode(delimiter) : undefined,
      MaxKeys: maxKeys,
      EncodingType: req.query.get("encoding-type"),
      KeyCount: page.entries.length,
      IsTruncated: page.truncated,
      ContinuationToken: token,
      NextContinuationToken: page.truncated ? Buffer.from(`k:${page.last}`).toString("base64url") : undefined,
      StartAfter: startAfter === undefined ? undefined : encode(startAfter),
      Contents: page.entries.flatMap((e) => (e.kind === "object" ? [contents(e.row, encode, owner)] : [])),
      CommonPrefixes: page.entries.flatMap((e) => (e.kind === "prefix" ? [{ Prefix: encode(e.prefix) }] : [])),
    }),
  };
}

/** ListObjects (version 1): a marker instead of a token; NextMarker only with a delimiter, as S3. */
export async function listObjectsV1(req: S3Request): Promise<S3Response> {
  await ownBucket(req.ctx, req.bucket);
  const prefix = req.query.get("prefix") ?? "";
  const delimiter = req.query.get("delimiter") ?? "";
  const marker = req.query.get("marker") ?? "";
  const maxKeys = pageSizeOf(req, "max-keys");
  const page = await listPage(req, { prefix, delimiter, after: marker, maxKeys });
  const encode = encoder(req);
  const owner = ownerOf(req.ctx.accountId);
  return {
    xml: s3Xml("ListBucketResult", {
      Name: req.bucket,
      Prefix: encode(prefix),
      Marker: encode(marker),
      NextMarker: page.truncated && delimiter ? encode(page.last!) : undefined,
      MaxKeys: maxKeys,
      Delimiter: delimiter ? encode(delimiter) : undefined,
      EncodingType: req.query.get("encoding-type"),
      IsTruncated: page.truncated,
      Contents: page.entries.flatMap((e) => (e.kind === "object" ? [contents(e.row, encode, owner)] : [])),
      CommonPrefixes: page.entries.flatMap((e) => (e.kind === "prefix" ? [{ Prefix: encode(e.prefix) }] : [])),
    }),
  };
}
