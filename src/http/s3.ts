// The S3 REST endpoint on Kiln's port: path-style (/bucket/key) and virtual-hosted
// (bucket.localhost) addressing, SigV4 as S3 clients sign, S3's XML answers and errors.
import { createHash, createHmac } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { bucketsOf, createBucket, headBucket, removeBucket, type S3Context } from "../api/s3/buckets.js";
import type { SignatureVerifier } from "../auth/sigv4.js";
import type { KilnConfig } from "../config.js";
import { ApiError } from "../protocol/errors.js";
import { asS3Error, parseS3Xml, s3ErrorXml, s3Xml, XML_TYPE } from "../protocol/s3/wire.js";
import type { MetaStore } from "../store/meta/database.js";
import { readBody } from "./body.js";
import { callerOf, requestToVerify } from "./caller.js";
import type { ParsedUrl } from "./ec2.js";

export interface S3Answer {
  status: number;
  action?: string;
  accountId?: string;
  region?: string;
  errorCode?: string;
}

const VIRTUAL_HOST = /^([a-z0-9][a-z0-9.-]*[a-z0-9])\.localhost(?::\d+)?$/;

/** The bucket a virtual-hosted request names in its Host header, if it is one. */
export function virtualHostBucket(req: IncomingMessage): string | undefined {
  return VIRTUAL_HOST.exec(req.headers.host ?? "")?.[1];
}

/** True when the request is signed for S3 (header or presigned form) or addresses a bucket by host. */
export function isS3Request(req: IncomingMessage, url: ParsedUrl): boolean {
  if (virtualHostBucket(req)) return true;
  const authorization = req.headers.authorization;
  if (typeof authorization === "string") return /Credential=[^/]+\/\d{8}\/[^/]+\/s3\/aws4_request/.test(authorization);
  const credential = url.pairs.find(([name]) => name === "X-Amz-Credential")?.[1];
  return credential !== undefined && /\/s3\/aws4_request$/.test(credential);
}

/** The canonical user id S3 reports for an account: stable, 64 hex digits. */
const canonicalUserId = (accountId: string) => createHmac("sha256", "kiln").update(accountId).digest("hex");

export function s3Endpoint(deps: { config: KilnConfig; verifier: SignatureVerifier; meta: MetaStore }) {
  const { config, meta } = deps;

  return async (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string): Promise<S3Answer> => {
    const answer: S3Answer = { status: 200 };
    const send = (status: number, body = "", headers: Record<string, string | number> = {}) => {
      answer.status = status;
      const base = { "x-amz-request-id": requestId, "x-amz-id-2": requestId, ...headers };
      if (body === "") {
        res.writeHead(status, { ...base, "content-length": 0 });
        res.end();
      } else {
        res.writeHead(status, { "content-type": XML_TYPE, "content-length": Buffer.byteLength(body), ...base });
        res.end(req.method === "HEAD" ? undefined : body);
      }
    };
    const hostBucket = virtualHostBucket(req);
    const segments = url.path.split("/").slice(1);
    const bucket = hostBucket ?? (segments[0] ? decodeURIComponent(segments[0]) : undefined);
    const key = (hostBucket ? segments : segments.slice(1)).map(decodeURIComponent).join("/") || undefined;
    const query = new Map(url.pairs);
    try {
      const body = await readBody(req, config.limits.maxBodyBytes);
      const caller = await authenticate(req, url, body);
      answer.accountId = caller.accountId;
      answer.region = caller.region;
      const ctx: S3Context = { requestId, accountId: caller.accountId, region: caller.region, meta };

      if (bucket === undefined) {
        if (req.method !== "GET") throw new ApiError("MethodNotAllowed", "The specified method is not allowed against this resource.");
        answer.action = "ListBuckets";
        const buckets = await bucketsOf(ctx);
        send(200, s3Xml("ListAllMyBucketsResult", {
          Owner: { ID: canonicalUserId(ctx.accountId), DisplayName: ctx.accountId },
          Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: b.creation_date, BucketRegion: b.region })) },
        }));
        return answer;
      }
      if (key === undefined && query.has("location") && req.method === "GET") {
        answer.action = "GetBucketLocation";
        const { region } = await headBucket(ctx, bucket);
        // us-east-1 answers an empty constraint, as S3 does.
        send(200, s3Xml("LocationConstraint", region === "us-east-1" ? "" : region));
        return answer;
      }
      if (key === undefined && url.pairs.length === 0) {
        switch (req.method) {
          case "PUT": {
            answer.action = "CreateBucket";
            const configuration = parseS3Xml(body).CreateBucketConfiguration as Record<string, unknown> | undefined;
            const constraint = configuration?.LocationConstraint;
            const { location } = await createBucket(ctx, bucket, typeof constraint === "string" ? constraint : undefined);
            send(200, "", { location });
            return answer;
          }
          case "HEAD": {
            answer.action = "HeadBucket";
            const { region } = await headBucket(ctx, bucket);
            send(200, "", { "x-amz-bucket-region": region });
            return answer;
          }
          case "DELETE":
            answer.action = "DeleteBucket";
            await removeBucket(ctx, bucket);
            send(204);
            return answer;
        }
      }
      throw new ApiError("NotImplemented", `Kiln does not serve ${req.method} ${key === undefined ? "on a bucket" : "on an object"}${url.pairs.length ? ` with ?${url.pairs.map(([n]) => n).join("&")}` : ""} yet.`);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const s3Error = asS3Error(error);
      answer.errorCode = s3Error.code;
      const extra = s3Error.code === "NoSuchBucket" || s3Error.code === "BucketAlreadyExists" || s3Error.code === "BucketAlreadyOwnedByYou" ? { BucketName: bucket } : {};
      const headers: Record<string, string> = s3Error.status === 413 ? { connection: "close" } : {};
      // HEAD answers carry no body: the status says it all.
      send(s3Error.status, req.method === "HEAD" ? "" : s3ErrorXml(s3Error.code, s3Error.message, requestId, extra), headers);
    }
    return answer;
  };

  async function authenticate(req: IncomingMessage, url: ParsedUrl, body: Buffer) {
    const caller = await callerOf(deps, requestToVerify(req, url, body), "s3");
    // The verifier leaves S3 payloads to S3: a signed hash must match the body it came with.
    const claimed = req.headers["x-amz-content-sha256"];
    if (typeof claimed === "string" && /^[0-9a-f]{64}$/.test(claimed) && claimed !== createHash("sha256").update(body).digest("hex")) {
      throw new ApiError("SignatureDoesNotMatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    return caller;
  }
}
