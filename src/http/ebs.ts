// The EBS direct APIs on the same port: REST paths under /snapshots, JSON bodies and answers
// (timestamps in epoch seconds), block data as raw bytes, errors typed by x-amzn-ErrorType.
import type { IncomingMessage, ServerResponse } from "node:http";
import * as ebs from "../api/ebs/snapshots.js";
import type { SignatureVerifier } from "../auth/sigv4.js";
import type { KilnConfig } from "../config.js";
import { ApiError } from "../protocol/errors.js";
import { toAwsJson } from "../protocol/json.js";
import { percentDecoded } from "../protocol/percent.js";
import { BLOCK_SIZE, type ChunkStore } from "../store/blocks/chunks.js";
import type { MetaStore } from "../store/meta/database.js";
import { readBody } from "./body.js";
import { callerOf, requestToVerify } from "./caller.js";
import type { ParsedUrl } from "./url.js";

export interface EbsAnswer {
  status: number;
  action?: string;
  accountId?: string;
  region?: string;
  errorCode?: string;
}

type Route = { method: string; pattern: RegExp; action: string };

const ROUTES: Route[] = [
  { method: "POST", pattern: /^\/snapshots$/, action: "StartSnapshot" },
  { method: "POST", pattern: /^\/snapshots\/completion\/([^/]+)$/, action: "CompleteSnapshot" },
  { method: "PUT", pattern: /^\/snapshots\/([^/]+)\/blocks\/([^/]+)$/, action: "PutSnapshotBlock" },
  { method: "GET", pattern: /^\/snapshots\/([^/]+)\/blocks\/([^/]+)$/, action: "GetSnapshotBlock" },
  { method: "GET", pattern: /^\/snapshots\/([^/]+)\/blocks$/, action: "ListSnapshotBlocks" },
  { method: "GET", pattern: /^\/snapshots\/([^/]+)\/changedblocks$/, action: "ListChangedBlocks" },
];

export const isEbsPath = (path: string) => path === "/snapshots" || path.startsWith("/snapshots/");

const JSON_TYPE = "application/json";

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

export function ebsEndpoint(deps: { config: KilnConfig; verifier: SignatureVerifier; meta: MetaStore; chunks: ChunkStore }) {
  const { config, meta, chunks } = deps;

  return async (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string): Promise<EbsAnswer> => {
    const answer: EbsAnswer = { status: 200 };
    const send = (status: number, body: string | Buffer, headers: Record<string, string | number> = {}) => {
      answer.status = status;
      res.writeHead(status, { "content-type": JSON_TYPE, "content-length": Buffer.byteLength(body), "x-amzn-requestid": requestId, ...headers });
      res.end(body);
    };
    try {
      const route = ROUTES.find((r) => r.method === req.method && r.pattern.test(url.path));
      if (!route) throw new ApiError("ValidationException", `No EBS direct API is at ${req.method} ${url.path}.`);
      answer.action = route.action;
      const malformed = () =>
        new ApiError("ValidationException", `The path ${url.path} is not well-formed: a %-escape is malformed or not UTF-8.`, "INVALID_PARAMETER_VALUE");
      const [, first, second] = route.pattern.exec(url.path)!.map((part) => (part === undefined ? part : percentDecoded(part, malformed)));
      const body = await readBody(req, route.action === "PutSnapshotBlock" ? BLOCK_SIZE : config.limits.maxBodyBytes);
      const request = requestToVerify(req, url, body);
      const caller = await callerOf(deps, request, "ebs");
      const query = request.query;
      answer.accountId = caller.accountId;
      answer.region = caller.region;
      const ctx: ebs.EbsContext = { accountId: caller.accountId, region: caller.region, meta, chunks };
      const q = (name: string) => (typeof query[name] === "string" ? (query[name] as string) : undefined);
      switch (route.action) {
        case "StartSnapshot": {
          let input: unknown;
          try {
            input = JSON.parse(body.toString("utf8") || "{}");
          } catch {
            throw new ApiError("ValidationException", "The request body is not valid JSON.", "INVALID_PARAMETER_VALUE");
          }
          send(201, toAwsJson(await ebs.startSnapshot(ctx, input as Parameters<typeof ebs.startSnapshot>[1])));
          break;
        }
        case "PutSnapshotBlock": {
          const { checksum } = await ebs.putSnapshotBlock(
            ctx,
            first!,
            second!,
            {
              dataLength: header(req, "x-amz-data-length"),
              checksum: header(req, "x-amz-checksum"),
              checksumAlgorithm: header(req, "x-amz-checksum-algorithm"),
            },
            body,
          );
          send(201, "{}", { "x-amz-Checksum": checksum, "x-amz-Checksum-Algorithm": "SHA256" });
          break;
        }
        case "CompleteSnapshot":
          send(
            202,
            toAwsJson(
              await ebs.completeSnapshot(ctx, first!, {
                changedBlocksCount: header(req, "x-amz-changedblockscount"),
                checksum: header(req, "x-amz-checksum"),
                checksumAlgorithm: header(req, "x-amz-checksum-algorithm"),
                checksumAggregationMethod: header(req, "x-amz-checksum-aggregation-method"),
              }),
            ),
          );
          break;
        case "ListSnapshotBlocks":
          send(
            200,
            toAwsJson(
              await ebs.listSnapshotBlocks(ctx, first!, {
                maxResults: q("maxResults"),
                pageToken: q("pageToken"),
                startingBlockIndex: q("startingBlockIndex"),
              }),
            ),
          );
          break;
        case "ListChangedBlocks":
          send(
            200,
            toAwsJson(
              await ebs.listChangedBlocks(ctx, first!, {
                maxResults: q("maxResults"),
                pageToken: q("pageToken"),
                startingBlockIndex: q("startingBlockIndex"),
                firstSnapshotId: q("firstSnapshotId"),
              }),
            ),
          );
          break;
        case "GetSnapshotBlock": {
          const { data, checksum } = await ebs.getSnapshotBlock(ctx, first!, second!, q("blockToken"));
          send(200, data, {
            "content-type": "application/octet-stream",
            "x-amz-Data-Length": data.length,
            "x-amz-Checksum": checksum,
            "x-amz-Checksum-Algorithm": "SHA256",
          });
          break;
        }
      }
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      answer.errorCode = error.code;
      const headers: Record<string, string> = { "x-amzn-ErrorType": error.code };
      if (error.status === 413) headers.connection = "close";
      send(error.status, JSON.stringify({ Message: error.message, Reason: error.reason }), headers);
    }
    return answer;
  };
}
