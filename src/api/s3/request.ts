// What an S3 operation receives and answers, whatever the addressing style or signature form.
import type { IncomingHttpHeaders } from "node:http";
import type { Readable } from "node:stream";
import { ApiError } from "../../protocol/errors.js";
import type { ChecksumAlgorithm } from "../../protocol/s3/checksums.js";
import type { Payload } from "../../protocol/s3/payload.js";
import type { MetaStore } from "../../store/meta/database.js";
import type { BlobStore } from "../../store/objects/blobs.js";

const MAX_PAGE = 1000;

export interface S3Context {
  requestId: string;
  accountId: string;
  /** The region the request was signed for. */
  region: string;
  meta: MetaStore;
  blobs: BlobStore;
}

export interface S3Request {
  ctx: S3Context;
  method: string;
  bucket: string;
  /** The object key, decoded; "" for requests on the bucket itself. */
  key: string;
  query: Map<string, string>;
  headers: IncomingHttpHeaders;
  /** The body as a checked stream, at most `maxSize` bytes, with `checksum` computed even if the request names none. */
  payload(maxSize: number, checksum?: ChecksumAlgorithm): Payload;
  /** A small body (an XML document) read whole. */
  body(): Promise<Buffer>;
}

export interface S3Response {
  status?: number;
  headers?: Record<string, string | number>;
  /** An XML document, or bytes to stream (with their length in headers). */
  xml?: string;
  stream?: Readable;
}

/** A page size from the query (max-keys, max-parts, …): at most 1,000, as S3 caps them. */
export function pageSizeOf(req: Pick<S3Request, "query">, name: string): number {
  const value = req.query.get(name);
  if (value === undefined) return MAX_PAGE;
  const number = Number(value);
  if (!Number.isInteger(number) || number < 0) throw new ApiError("InvalidArgument", `Provided ${name} not an integer or within integer range`);
  return Math.min(number, MAX_PAGE);
}

export const header = (req: Pick<S3Request, "headers">, name: string): string | undefined => {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : value;
};
