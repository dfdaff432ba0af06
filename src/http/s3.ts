// The S3 REST endpoint on Kiln's port: path-style (/bucket/key) and virtual-hosted
// (bucket.localhost) addressing, SigV4 as S3 clients sign (the body checked as it streams, not
// read first), S3's XML answers and errors, object bytes streamed both ways.
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import type { S3Context, S3Request, S3Response } from "../api/s3/request.js";
import { routeOf } from "../api/s3/routes.js";
import type { SignatureVerifier } from "../auth/sigv4.js";
import type { KilnConfig } from "../config.js";
import { ApiError } from "../protocol/errors.js";
import { percentDecoded } from "../protocol/percent.js";
import { openPayload, readPayload } from "../protocol/s3/payload.js";
import { asS3Error, s3ErrorXml, XML_TYPE } from "../protocol/s3/wire.js";
import type { MetaStore } from "../store/meta/database.js";
import type { BlobStore } from "../store/objects/blobs.js";
import { callerOf, requestToVerify } from "./caller.js";
import type { ParsedUrl } from "./url.js";

export interface S3Answer {
  status: number;
  action?: string;
  accountId?: string;
  region?: string;
  errorCode?: string;
}

const invalidUri = () => new ApiError("InvalidURI", "Couldn't parse the specified URI.");

const VIRTUAL_HOST = /^([a-z0-9][a-z0-9.-]*[a-z0-9])\.localhost(?::\d+)?$/;
const NO_BODY = Buffer.alloc(0);
/** A credential scoped to S3: key/date/region/s3/aws4_request, in the header or presigned form. */
const S3_SCOPE = /Credential=[^/]+\/\d{8}\/[^/]+\/s3\/aws4_request/;

/** The bucket a virtual-hosted request names in its Host header, if it is one. */
export function virtualHostBucket(req: IncomingMessage): string | undefined {
  return VIRTUAL_HOST.exec(req.headers.host ?? "")?.[1];
}

/** True when the request is signed for S3 (header or presigned form) or addresses a bucket by host. */
export function isS3Request(req: IncomingMessage, url: ParsedUrl): boolean {
  if (virtualHostBucket(req)) return true;
  const authorization = req.headers.authorization;
  if (typeof authorization === "string") return S3_SCOPE.test(authorization);
  const credential = url.pairs.find(([name]) => name === "X-Amz-Credential")?.[1];
  return credential !== undefined && S3_SCOPE.test(`Credential=${credential}`);
}

/** Error elements S3 adds beside Code and Message, by code. */
function errorDetails(code: string, req: Pick<S3Request, "bucket" | "key" | "query">): Record<string, string> {
  switch (code) {
    case "NoSuchBucket":
    case "BucketAlreadyExists":
    case "BucketAlreadyOwnedByYou":
    case "BucketNotEmpty":
      return { BucketName: req.bucket };
    case "NoSuchKey":
      return { Key: req.key };
    case "NoSuchUpload":
      return { UploadId: req.query.get("uploadId") ?? "" };
    default:
      return {};
  }
}

export function s3Endpoint(deps: { config: KilnConfig; verifier: SignatureVerifier; meta: MetaStore; blobs: BlobStore }) {
  const { config, meta, blobs } = deps;

  return async (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string): Promise<S3Answer> => {
    const answer: S3Answer = { status: 200 };
    const base = { "x-amz-request-id": requestId, "x-amz-id-2": requestId, server: "Kiln" };
    const hostBucket = virtualHostBucket(req);
    const segments = url.path.split("/").slice(1);
    const target = { method: req.method ?? "GET", bucket: "", key: "", query: new Map(url.pairs), headers: req.headers };
    try {
      const decoded = segments.map((segment) => percentDecoded(segment, invalidUri));
      target.bucket = hostBucket ?? decoded[0] ?? "";
      target.key = (hostBucket ? decoded : decoded.slice(1)).join("/");
      const route = routeOf(target);
      answer.action = route.action;
      // S3 signs what x-amz-content-sha256 claims; the body is checked against it as it streams.
      const caller = await callerOf(deps, requestToVerify(req, url, NO_BODY), "s3");
      answer.accountId = caller.accountId;
      answer.region = caller.region;
      const ctx: S3Context = { requestId, accountId: caller.accountId, region: caller.region, meta, blobs };
      const request: S3Request = {
        ...target,
        ctx,
        payload: (maxSize, checksum) => openPayload(req, caller.signing, maxSize, checksum),
        body: () => readPayload(req, caller.signing, config.limits.maxBodyBytes),
      };
      const response = await route.handle(request);
      await send(res, req, response, base, answer);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (res.headersSent) {
        res.destroy(error);
        return answer;
      }
      const s3Error = asS3Error(error);
      answer.status = s3Error.status;
      answer.errorCode = s3Error.code;
      // A body left unread leaves the connection unusable: answer, then close it.
      const headers: Record<string, string> = req.complete ? {} : { connection: "close" };
      const body =
        req.method === "HEAD" || s3Error.status === 304 ? "" : s3ErrorXml(s3Error.code, s3Error.message, requestId, errorDetails(s3Error.code, target));
      res.writeHead(s3Error.status, { ...base, ...headers, ...(body ? { "content-type": XML_TYPE } : {}), "content-length": Buffer.byteLength(body) });
      res.end(body);
    }
    return answer;
  };
}

async function send(res: ServerResponse, req: IncomingMessage, response: S3Response, base: Record<string, string>, answer: S3Answer) {
  const status = response.status ?? 200;
  answer.status = status;
  if (response.stream) {
    // The first piece is read before the status line: a store that cannot begin the read fails
    // the request as a whole (ServiceUnavailable) rather than cutting a 200 short.
    const pieces = response.stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const first = await pieces.next();
    res.writeHead(status, { ...base, ...response.headers });
    const rest = { [Symbol.asyncIterator]: () => pieces };
    await pipeline(async function* () {
      if (first.done) return;
      yield first.value;
      // for await hands an early end on to the stream, which is then destroyed.
      yield* rest;
    }, res);
    return;
  }
  const body = response.xml ?? "";
  const headers = { ...base, ...(body ? { "content-type": XML_TYPE } : {}), "content-length": Buffer.byteLength(body), ...response.headers };
  res.writeHead(status, headers);
  res.end(req.method === "HEAD" ? undefined : body);
}
