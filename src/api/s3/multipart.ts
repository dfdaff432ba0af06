// Multipart uploads: parts stream into blobs of their own, and completing an upload writes an
// object row naming those blobs in order — no byte is copied, so completing 5 GiB is as quick as
// completing 5 MiB. Parts left out of the completed object, and aborted uploads, release theirs.
import { randomBytes } from "node:crypto";
import { createHash } from "node:crypto";
import { ApiError } from "../../protocol/errors.js";
import { checksumAlgorithm, checksumHeader, compositeChecksum, runningChecksum, type ChecksumAlgorithm } from "../../protocol/s3/checksums.js";
import { asArray, malformedXml, parseS3Xml, s3Xml } from "../../protocol/s3/wire.js";
import { endUpload, getUpload, insertUpload, partsOf, putUploadPart, uploadsOf, type ObjectRow, type UploadRow } from "../../store/meta/objects.js";
import type { BlobRef } from "../../store/meta/schema.js";
import { wholeRanges } from "../../store/objects/blobs.js";
import { ownBucket } from "./buckets.js";
import { ownerOf } from "./owner.js";
import { attributesFrom, checkKey, tagsFromHeader, writeCondition } from "./object-attributes.js";
import { releaseBlobs } from "../../store/objects/commit.js";
import { checksumHeaders } from "./objects.js";
import { header, pageSizeOf, type S3Request, type S3Response } from "./request.js";

export const MAX_PART_BYTES = 5 * 1024 ** 3;
/** Every part but the last must be at least this big, as in S3. */
export const MIN_PART_BYTES = 5 * 1024 ** 2;
const MAX_PARTS = 10_000;
/** Uploads read per query while filtering by prefix. */
const UPLOAD_BATCH = 1000;

const noSuchUpload = () =>
  new ApiError("NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.");

/** Upload ids sort by when they began, as ListMultipartUploads orders a key's uploads. */
const newUploadId = () => `${Date.now().toString(36).padStart(9, "0")}${randomBytes(24).toString("base64url")}`;

async function uploadOf(req: S3Request): Promise<UploadRow> {
  await ownBucket(req.ctx, req.bucket);
  const upload = await getUpload(req.ctx.meta.db, req.query.get("uploadId") ?? "");
  if (!upload || upload.bucket !== req.bucket || upload.key !== req.key) throw noSuchUpload();
  return upload;
}

export async function createMultipartUpload(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  await ownBucket(ctx, req.bucket);
  checkKey(req.key);
  const algorithm = checksumAlgorithm(header(req, "x-amz-checksum-algorithm"));
  const type = header(req, "x-amz-checksum-type")?.toUpperCase();
  if (type !== undefined && type !== "COMPOSITE" && type !== "FULL_OBJECT")
    throw new ApiError("InvalidRequest", "The x-amz-checksum-type header must be COMPOSITE or FULL_OBJECT.");
  if (type !== undefined && !algorithm) throw new ApiError("InvalidRequest", "The x-amz-checksum-type header requires the x-amz-checksum-algorithm header.");
  if (algorithm === "CRC64NVME" && type === "COMPOSITE") throw new ApiError("InvalidRequest", "The FULL_OBJECT checksum type is required for CRC64NVME.");
  const upload: UploadRow = {
    upload_id: newUploadId(),
    bucket: req.bucket,
    key: req.key,
    account_id: ctx.accountId,
    initiated: new Date().toISOString(),
    ...attributesFrom(req),
    tags: JSON.stringify(tagsFromHeader(header(req, "x-amz-tagging"))),
    checksum_algorithm: algorithm ?? null,
    checksum_type: algorithm ? (type ?? (algorithm === "CRC64NVME" ? "FULL_OBJECT" : "COMPOSITE")) : null,
  };
  await insertUpload(ctx.meta.db, upload);
  return {
    headers: algorithm ? { "x-amz-checksum-algorithm": algorithm, "x-amz-checksum-type": upload.checksum_type! } : {},
    xml: s3Xml("InitiateMultipartUploadResult", { Bucket: req.bucket, Key: req.key, UploadId: upload.upload_id }),
  };
}

function partNumberOf(req: S3Request): number {
  const number = Number(req.query.get("partNumber"));
  if (!Number.isInteger(number) || number < 1 || number > MAX_PARTS)
    throw new ApiError("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive");
  return number;
}

export async function uploadPart(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  const upload = await uploadOf(req);
  const partNumber = partNumberOf(req);
  const payload = req.payload(MAX_PART_BYTES, (upload.checksum_algorithm as ChecksumAlgorithm | null) ?? undefined);
  const blob = await ctx.blobs.write(payload.stream, payload.length);
  const summary = payload.summary();
  const etag = `"${summary.md5.toString("hex")}"`;
  const stored = await putUploadPart(ctx.meta.db, {
    upload_id: upload.upload_id,
    part_number: partNumber,
    blob_id: blob.id,
    size: summary.size,
    etag,
    checksum: summary.checksum?.value ?? null,
    last_modified: new Date().toISOString(),
  }).catch(async (error: unknown) => {
    await ctx.blobs.remove(blob.id);
    throw error;
  });
  if (!stored.uploadExists) {
    await ctx.blobs.remove(blob.id);
    throw noSuchUpload();
  }
  if (stored.replacedBlob) await ctx.blobs.remove(stored.replacedBlob);
  return { headers: { etag, ...checksumHeaders(summary.checksum?.algorithm, summary.checksum?.value) } };
}

interface ListedPart {
  PartNumber?: string;
  ETag?: string;
  [checksum: string]: string | undefined;
}

const unquote = (etag: string) => etag.trim().replace(/^"|"$/g, "");

export async function completeMultipartUpload(req: S3Request): Promise<S3Response> {
  const { ctx } = req;
  const upload = await uploadOf(req);
  const condition = writeCondition(req);
  const document = (await parseS3Xml(await req.body())).CompleteMultipartUpload as { Part?: ListedPart | ListedPart[] } | undefined;
  const listed = asArray(document?.Part);
  if (!document || listed.length === 0) throw malformedXml();
  const stored = new Map((await partsOf(ctx.meta.db, upload.upload_id)).map((p) => [p.part_number, p]));
  const algorithm = upload.checksum_algorithm as ChecksumAlgorithm | null;
  const chosen = listed.map((part, index) => {
    const number = Number(part.PartNumber);
    if (!Number.isInteger(number)) throw malformedXml();
    if (index > 0 && number <= Number(listed[index - 1]!.PartNumber))
      throw new ApiError("InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.");
    const row = stored.get(number);
    const invalid = () =>
      new ApiError(
        "InvalidPart",
        "One or more of the specified parts could not be found.  The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.",
      );
    if (!row || unquote(part.ETag ?? "") !== unquote(row.etag)) throw invalid();
    const declared = algorithm ? part[`Checksum${algorithm}`] : undefined;
    if (declared !== undefined && declared !== row.checksum) throw invalid();
    return row;
  });
  chosen.forEach((part, index) => {
    if (index < chosen.length - 1 && part.size < MIN_PART_BYTES)
      throw new ApiError("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size");
  });
  const blobs: BlobRef[] = chosen.map((p) => ({ id: p.blob_id, size: p.size }));
  const md5s = createHash("md5");
  for (const part of chosen) md5s.update(Buffer.from(unquote(part.etag), "hex"));
  let checksumValue: string | null = null;
  if (algorithm) {
    checksumValue =
      upload.checksum_type === "FULL_OBJECT"
        ? await fullObjectChecksum(req, algorithm, blobs)
        : await compositeChecksum(
            algorithm,
            chosen.map((p) => p.checksum ?? ""),
          );
    const declared = header(req, checksumHeader(algorithm));
    if (declared !== undefined && declared !== checksumValue.replace(/-\d+$/, "") && declared !== checksumValue) {
      throw new ApiError("BadDigest", `The ${algorithm} you specified for the whole object did not match the calculated checksum.`);
    }
  }
  const object: ObjectRow = {
    bucket: upload.bucket,
    key: upload.key,
    size: chosen.reduce((sum, part) => sum + part.size, 0),
    etag: `"${md5s.digest("hex")}-${chosen.length}"`,
    blobs: JSON.stringify(blobs),
    content_type: upload.content_type,
    headers: upload.headers,
    metadata: upload.metadata,
    tags: upload.tags,
    checksum_algorithm: algorithm,
    checksum_value: checksumValue,
    checksum_type: upload.checksum_type,
    part_sizes: JSON.stringify(chosen.map((p) => p.size)),
    last_modified: new Date().toISOString(),
  };
  const released = await endUpload(ctx.meta.db, upload.upload_id, object, condition);
  if (released === undefined) throw noSuchUpload();
  await releaseBlobs(ctx.blobs, released);
  const checksum = algorithm && checksumValue ? { [`Checksum${algorithm}`]: checksumValue, ChecksumType: upload.checksum_type ?? undefined } : {};
  return {
    xml: s3Xml("CompleteMultipartUploadResult", {
      Location: `/${encodeURIComponent(upload.bucket)}/${upload.key.split("/").map(encodeURIComponent).join("/")}`,
      Bucket: upload.bucket,
      Key: upload.key,
      ETag: object.etag,
      ...checksum,
    }),
  };
}

/** A full-object checksum of a multipart object: read back once, part after part. */
async function fullObjectChecksum(req: S3Request, algorithm: ChecksumAlgorithm, blobs: BlobRef[]): Promise<string> {
  const checksum = runningChecksum(algorithm);
  for await (const chunk of req.ctx.blobs.read(wholeRanges(blobs))) checksum.update(chunk as Buffer);
  return (await checksum.digest()).toString("base64");
}

export async function abortMultipartUpload(req: S3Request): Promise<S3Response> {
  const upload = await uploadOf(req);
  const released = await endUpload(req.ctx.meta.db, upload.upload_id);
  if (released === undefined) throw noSuchUpload();
  await releaseBlobs(req.ctx.blobs, released);
  return { status: 204 };
}

export async function listParts(req: S3Request): Promise<S3Response> {
  const upload = await uploadOf(req);
  const marker = Number(req.query.get("part-number-marker") ?? 0);
  if (!Number.isInteger(marker) || marker < 0) throw new ApiError("InvalidArgument", "Provided part-number-marker not an integer or within integer range");
  const maxParts = pageSizeOf(req, "max-parts");
  const rows = await partsOf(req.ctx.meta.db, upload.upload_id, marker, maxParts + 1);
  const page = rows.slice(0, maxParts);
  const truncated = rows.length > maxParts;
  const algorithm = upload.checksum_algorithm;
  return {
    xml: s3Xml("ListPartsResult", {
      Bucket: upload.bucket,
      Key: upload.key,
      UploadId: upload.upload_id,
      PartNumberMarker: marker,
      NextPartNumberMarker: page.length ? page[page.length - 1]!.part_number : undefined,
      MaxParts: maxParts,
      IsTruncated: truncated,
      Part: page.map((p) => ({
        PartNumber: p.part_number,
        LastModified: p.last_modified,
        ETag: p.etag,
        Size: p.size,
        ...(algorithm && p.checksum ? { [`Checksum${algorithm}`]: p.checksum } : {}),
      })),
      Initiator: ownerOf(upload.account_id),
      Owner: ownerOf(upload.account_id),
      StorageClass: "STANDARD",
      ChecksumAlgorithm: algorithm ?? undefined,
      ChecksumType: upload.checksum_type ?? undefined,
    }),
  };
}

export async function listMultipartUploads(req: S3Request): Promise<S3Response> {
  await ownBucket(req.ctx, req.bucket);
  const prefix = req.query.get("prefix") ?? "";
  const keyMarker = req.query.get("key-marker");
  const uploadIdMarker = keyMarker === undefined ? undefined : req.query.get("upload-id-marker");
  const maxUploads = pageSizeOf(req, "max-uploads");
  const uploads: UploadRow[] = [];
  let after = { key: keyMarker, uploadId: uploadIdMarker };
  // Uploads are few; filtering by prefix as they are read keeps the query simple.
  while (uploads.length <= maxUploads) {
    const rows = await uploadsOf(req.ctx.meta.db, req.bucket, after, UPLOAD_BATCH);
    for (const row of rows) if (row.key.startsWith(prefix) && uploads.length <= maxUploads) uploads.push(row);
    if (rows.length < UPLOAD_BATCH) break;
    const last = rows[rows.length - 1]!;
    after = { key: last.key, uploadId: last.upload_id };
  }
  const page = uploads.slice(0, maxUploads);
  const truncated = uploads.length > maxUploads;
  const last = page[page.length - 1];
  return {
    xml: s3Xml("ListMultipartUploadsResult", {
      Bucket: req.bucket,
      KeyMarker: keyMarker ?? "",
      UploadIdMarker: uploadIdMarker ?? "",
      NextKeyMarker: truncated && last ? last.key : undefined,
      NextUploadIdMarker: truncated && last ? last.upload_id : undefined,
      Prefix: prefix,
      MaxUploads: maxUploads,
      IsTruncated: truncated,
      Upload: page.map((u) => ({
        Key: u.key,
        UploadId: u.upload_id,
        Initiator: ownerOf(u.account_id),
        Owner: ownerOf(u.account_id),
        StorageClass: "STANDARD",
        Initiated: u.initiated,
        ChecksumAlgorithm: u.checksum_algorithm ?? undefined,
        ChecksumType: u.checksum_type ?? undefined,
      })),
    }),
  };
}
