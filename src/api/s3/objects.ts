// Objects: PutObject, GetObject and HeadObject (ranges, conditions, part numbers), DeleteObject,
// DeleteObjects, CopyObject and object tagging. Bytes stream between the request or response
// and the blob store; a row naming them is written only once they are whole and checked.
import { ApiError } from "../../protocol/errors.js";
import { percentDecoded } from "../../protocol/percent.js";
import { canCarry } from "../../protocol/s3/header-text.js";
import { checksumHeader, type ChecksumAlgorithm } from "../../protocol/s3/checksums.js";
import { asArray, malformedXml, parseS3Xml, s3Xml, type XmlElements } from "../../protocol/s3/wire.js";
import type { BlobRef } from "../../store/meta/schema.js";
import { blobsOf, deleteObjectRow, getObject, setObjectTags, type ObjectRow } from "../../store/meta/objects.js";
import { rangesOf } from "../../store/objects/blobs.js";
import { commitObject, releaseBlobs } from "../../store/objects/commit.js";
import { ownBucket } from "./buckets.js";
import {
  attributesFrom,
  checkConditions,
  checkKey,
  checkTags,
  objectHeaders,
  parseRange,
  tagsFromHeader,
  tagsOf,
  writeCondition,
  type Tags,
} from "./object-attributes.js";
import { header, type S3Context, type S3Request, type S3Response } from "./request.js";

/** S3's largest single PUT. */
export const MAX_PUT_BYTES = 5 * 1024 ** 3;
const MAX_DELETE_KEYS = 1000;

export const noSuchKey = () => new ApiError("NoSuchKey", "The specified key does not exist.");

/** The checksum headers an answer carries for an object or part. */
export function checksumHeaders(algorithm: string | null | undefined, value: string | null | undefined, type?: string | null): Record<string, string> {
  if (!algorithm || !value) return {};
  return { [checksumHeader(algorithm as ChecksumAlgorithm)]: value, ...(type ? { "x-amz-checksum-type": type } : {}) };
}

export async function putObject(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  await ownBucket(ctx, req.bucket);
  checkKey(req.key);
  const attributes = { ...attributesFrom(req), tags: JSON.stringify(tagsFromHeader(header(req, "x-amz-tagging"))) };
  const condition = writeCondition(req);
  const payload = req.payload(MAX_PUT_BYTES);
  const blob = await ctx.blobs.write(payload.stream, payload.length);
  const summary = payload.summary();
  const row: ObjectRow = {
    bucket: req.bucket,
    key: req.key,
    size: summary.size,
    etag: `"${summary.md5.toString("hex")}"`,
    blobs: JSON.stringify([blob]),
    ...attributes,
    checksum_algorithm: summary.checksum?.algorithm ?? null,
    checksum_value: summary.checksum?.value ?? null,
    checksum_type: summary.checksum ? "FULL_OBJECT" : null,
    part_sizes: null,
    last_modified: new Date().toISOString(),
  };
  await commitObject(ctx.meta.db, ctx.blobs, row, condition);
  return { headers: { etag: row.etag, ...checksumHeaders(row.checksum_algorithm, row.checksum_value, row.checksum_type) } };
}

async function existingObject(ctx: S3Context, bucket: string, key: string): Promise<ObjectRow> {
  await ownBucket(ctx, bucket);
  const row = await getObject(ctx.meta.db, bucket, key);
  if (!row) throw noSuchKey();
  return row;
}

const RESPONSE_OVERRIDES: Record<string, string> = {
  "response-content-type": "content-type",
  "response-content-language": "content-language",
  "response-expires": "expires",
  "response-cache-control": "cache-control",
  "response-content-disposition": "content-disposition",
  "response-content-encoding": "content-encoding",
};

/** GetObject, and HeadObject (the same answer without its bytes). */
export async function getObjectData(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  const row = await existingObject(ctx, req.bucket, req.key);
  checkConditions(req, row);
  const headers = objectHeaders(row);
  for (const [parameter, name] of Object.entries(RESPONSE_OVERRIDES)) {
    const value = req.query.get(parameter);
    if (value === undefined) continue;
    if (!canCarry(name, value))
      throw new ApiError("InvalidArgument", `The value of ${parameter} holds characters a header cannot carry (control characters, or beyond Latin-1).`);
    headers[name] = value;
  }
  let range: { start: number; end: number } | undefined;
  const partNumber = req.query.get("partNumber");
  if (partNumber !== undefined) {
    const number = Number(partNumber);
    const sizes = row.part_sizes ? (JSON.parse(row.part_sizes) as number[]) : [row.size];
    if (!Number.isInteger(number) || number < 1 || number > 10_000)
      throw new ApiError("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
    if (number > sizes.length) throw new ApiError("InvalidPart", "The requested partnumber is not satisfiable");
    const start = sizes.slice(0, number - 1).reduce((a, b) => a + b, 0);
    range = { start, end: start + sizes[number - 1]! };
    headers["x-amz-mp-parts-count"] = sizes.length;
  } else {
    range = parseRange(header(req, "range"), row.size);
  }
  const whole = range === undefined || (range.start === 0 && range.end === row.size);
  if (header(req, "x-amz-checksum-mode")?.toUpperCase() === "ENABLED" && whole) {
    Object.assign(headers, checksumHeaders(row.checksum_algorithm, row.checksum_value, row.checksum_type));
  }
  const { start, end } = range ?? { start: 0, end: row.size };
  headers["content-length"] = end - start;
  if (range) headers["content-range"] = `bytes ${start}-${end - 1}/${row.size}`;
  const status = range && partNumber === undefined ? 206 : partNumber !== undefined && !whole ? 206 : 200;
  if (req.method === "HEAD") return { status, headers };
  return { status, headers, stream: ctx.blobs.read(rangesOf(blobsOf(row), start, end)) };
}

export async function deleteObject(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  await ownBucket(ctx, req.bucket);
  await releaseBlobs(ctx.blobs, await deleteObjectRow(ctx.meta.db, req.bucket, req.key));
  return { status: 204 };
}

/** DeleteObjects: up to 1,000 keys; S3 wants the body's integrity shown (Content-MD5 or a checksum). */
export async function deleteObjects(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  await ownBucket(ctx, req.bucket);
  const hasIntegrity =
    header(req, "content-md5") !== undefined ||
    Object.keys(req.headers).some((name) => name.startsWith("x-amz-checksum-") || name === "x-amz-sdk-checksum-algorithm");
  if (!hasIntegrity) throw new ApiError("InvalidRequest", "Missing required header for this request: Content-MD5 or x-amz-checksum-*");
  const document = (await parseS3Xml(await req.body())).Delete as { Object?: unknown; Quiet?: string } | undefined;
  const objects = asArray(document?.Object as { Key?: unknown } | { Key?: unknown }[] | undefined);
  if (!document || objects.length === 0 || objects.length > MAX_DELETE_KEYS) {
    throw malformedXml();
  }
  const quiet = document.Quiet === "true";
  const deleted: XmlElements[] = [];
  const errors: XmlElements[] = [];
  for (const object of objects) {
    const key = typeof object.Key === "string" ? object.Key : undefined;
    if (key === undefined) throw malformedXml();
    await releaseBlobs(ctx.blobs, await deleteObjectRow(ctx.meta.db, req.bucket, key));
    if (!quiet) deleted.push({ Key: key });
  }
  return { xml: s3Xml("DeleteResult", { Deleted: deleted, Error: errors }) };
}

/** x-amz-copy-source: "bucket/key" or "/bucket/key", URL-encoded, perhaps with ?versionId=. */
function copySource(value: string): { bucket: string; key: string } {
  const [path = ""] = value.split("?");
  const decoded = percentDecoded(path.replace(/^\//, ""), () => new ApiError("InvalidArgument", "Invalid copy source encoding."));
  const slash = decoded.indexOf("/");
  if (slash <= 0 || slash === decoded.length - 1)
    throw new ApiError("InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey");
  return { bucket: decoded.slice(0, slash), key: decoded.slice(slash + 1) };
}

export async function copyObject(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  const sourceName = copySource(header(req, "x-amz-copy-source")!);
  const source = await existingObject(ctx, sourceName.bucket, sourceName.key);
  await ownBucket(ctx, req.bucket);
  checkKey(req.key);
  checkConditions(req, source, "x-amz-copy-source-");
  const replaceMetadata = (header(req, "x-amz-metadata-directive") ?? "COPY").toUpperCase();
  const replaceTags = (header(req, "x-amz-tagging-directive") ?? "COPY").toUpperCase();
  for (const directive of [replaceMetadata, replaceTags]) {
    if (directive !== "COPY" && directive !== "REPLACE") throw new ApiError("InvalidArgument", `Unknown directive ${directive}: COPY or REPLACE.`);
  }
  if (sourceName.bucket === req.bucket && sourceName.key === req.key && replaceMetadata === "COPY") {
    throw new ApiError(
      "InvalidRequest",
      "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
    );
  }
  const attributes =
    replaceMetadata === "REPLACE" ? attributesFrom(req) : { content_type: source.content_type, headers: source.headers, metadata: source.metadata };
  const tags = replaceTags === "REPLACE" ? JSON.stringify(tagsFromHeader(header(req, "x-amz-tagging"))) : source.tags;
  const copies: BlobRef[] = [];
  try {
    for (const blob of blobsOf(source)) copies.push({ id: await ctx.blobs.copy(blob.id), size: blob.size });
  } catch (error) {
    await releaseBlobs(ctx.blobs, copies);
    throw error;
  }
  const row: ObjectRow = {
    ...source,
    ...attributes,
    tags,
    bucket: req.bucket,
    key: req.key,
    blobs: JSON.stringify(copies),
    last_modified: new Date().toISOString(),
  };
  await commitObject(ctx.meta.db, ctx.blobs, row);
  const checksum =
    row.checksum_algorithm && row.checksum_value
      ? { [`Checksum${row.checksum_algorithm}`]: row.checksum_value, ChecksumType: row.checksum_type ?? undefined }
      : {};
  return { xml: s3Xml("CopyObjectResult", { ETag: row.etag, LastModified: row.last_modified, ...checksum }) };
}

export async function getObjectTagging(req: S3Request): Promise<S3Response> {
  const row = await existingObject(req.ctx, req.bucket, req.key);
  return { xml: s3Xml("Tagging", { TagSet: { Tag: tagsOf(row).map(([Key, Value]) => ({ Key, Value })) } }) };
}

export async function putObjectTagging(req: S3Request): Promise<S3Response> {
  await existingObject(req.ctx, req.bucket, req.key);
  const tagging = (await parseS3Xml(await req.body())).Tagging as { TagSet?: { Tag?: unknown } | string } | undefined;
  if (!tagging || tagging.TagSet === undefined) throw malformedXml();
  const tagSet = typeof tagging.TagSet === "object" ? tagging.TagSet : {};
  const tags: Tags = asArray(tagSet.Tag as { Key?: unknown; Value?: unknown } | { Key?: unknown; Value?: unknown }[] | undefined).map((tag) => {
    if (typeof tag.Key !== "string") throw malformedXml();
    return [tag.Key, typeof tag.Value === "string" ? tag.Value : ""];
  });
  await setTags(req, checkTags(tags));
  return {};
}

export async function deleteObjectTagging(req: S3Request): Promise<S3Response> {
  await existingObject(req.ctx, req.bucket, req.key);
  await setTags(req, []);
  return { status: 204 };
}

async function setTags(req: S3Request, tags: Tags) {
  if (!(await setObjectTags(req.ctx.meta.db, req.bucket, req.key, JSON.stringify(tags)))) throw noSuchKey();
}
