// One node:http server. Each request gets an id, is routed by protocol (Kiln's own /_kiln/
// routes; S3, by its signing scope or a bucket.localhost host; the EBS direct APIs under
// /snapshots; the EC2 Query API on /), and leaves one log line.
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { yieldToLoop } from "../event-loop.js";
import type { Logger } from "../log.js";
import { isStoreUnavailable } from "../store/meta/database.js";
import type { AdminAnswer } from "./admin.js";
import { ec2ErrorBody, type Ec2Answer, type Ec2Endpoint, type ParsedUrl } from "./ec2.js";
import { isEbsPath, type EbsAnswer } from "./ebs.js";
import { isS3Request, type S3Answer } from "./s3.js";
import { s3ErrorXml, XML_TYPE } from "../protocol/s3/wire.js";

export interface Routes {
  ec2: Ec2Endpoint;
  ebs: (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string) => Promise<EbsAnswer>;
  s3: (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string) => Promise<S3Answer>;
  admin: (req: IncomingMessage, path: string) => Promise<AdminAnswer>;
}

function parseUrl(raw: string): ParsedUrl {
  const q = raw.indexOf("?");
  const path = q < 0 ? raw : raw.slice(0, q);
  return { path, pairs: q < 0 ? [] : [...new URLSearchParams(raw.slice(q + 1))] };
}

export function createHttpServer(routes: Routes, logger: Logger): Server {
  // The SDKs keep idle connections open indefinitely; a server that closes one just as a client
  // reuses it resets that request. Holding idle connections for a minute, as AWS's endpoints
  // do, keeps that race away from clients that pause between calls (a test converting a disk, a
  // workflow step waiting on a timer).
  const server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 120_000, headersTimeout: 30_000 }, (req, res) => {
    void handle(req, res);
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    const url = parseUrl(req.url ?? "/");
    let answer: Partial<Ec2Answer> & { status: number };
    let protocol: "ec2" | "s3" | "ebs" = "ec2";
    try {
      // Requests that arrive together begin in turn (yieldToLoop), not all in one turn of the
      // event loop; Kiln's own routes (health) are answered at once.
      if (!url.path.startsWith("/_kiln/")) await yieldToLoop();
      if (url.path.startsWith("/_kiln/")) {
        const admin = await routes.admin(req, url.path);
        answer = { status: admin.status };
        send(res, admin.status, "application/json", admin.body, requestId);
      } else if (isS3Request(req, url)) {
        protocol = "s3";
        answer = await routes.s3(req, res, url, requestId);
      } else if (isEbsPath(url.path)) {
        protocol = "ebs";
        answer = await routes.ebs(req, res, url, requestId);
      } else if (url.path === "/") {
        answer = await routes.ec2.handle(req, url, requestId);
        send(res, answer.status, answer.contentType!, answer.body!, requestId);
      } else {
        answer = { status: 404, errorCode: "NotFound" };
        const error = ec2ErrorBody("NotFound", `Kiln serves no resource at ${url.path}.`, requestId, false);
        send(res, 404, error.contentType, error.body, requestId);
      }
    } catch (error) {
      // Never a stack trace on the wire: log it, answer the protocol's own error. A metadata
      // or object store out of reach is the client's to retry (ServiceUnavailable); anything else is ours.
      const unavailable = isStoreUnavailable(error);
      if (unavailable) logger.warn({ requestId, err: error }, "a store is unavailable");
      else logger.error({ requestId, err: error }, "request failed");
      const internal = unavailable ? unavailableError(protocol, requestId) : internalError(protocol, requestId);
      answer = { status: internal.status, errorCode: internal.code };
      if (!res.headersSent) send(res, internal.status, internal.contentType, internal.body, requestId, internal.headers);
      else res.destroy();
    }
    logger.info(
      {
        requestId,
        method: req.method,
        path: url.path,
        action: answer.action,
        account: answer.accountId,
        region: answer.region,
        status: answer.status,
        error: answer.errorCode,
        durationMs: Number(process.hrtime.bigint() - started) / 1e6,
      },
      "request",
    );
  }

  return server;
}

interface ErrorAnswer {
  status: number;
  code: string;
  contentType: string;
  body: string;
  headers?: Record<string, string>;
}

/** An error as each protocol's clients expect to read one. */
function protocolError(protocol: "ec2" | "s3" | "ebs", requestId: string, status: number, code: { query: string; json: string }, message: string): ErrorAnswer {
  switch (protocol) {
    case "s3":
      return { status, code: code.query, contentType: XML_TYPE, body: s3ErrorXml(code.query, message, requestId) };
    case "ebs":
      return { status, code: code.json, contentType: "application/json", body: JSON.stringify({ Message: message }), headers: { "x-amzn-ErrorType": code.json } };
    case "ec2":
      return { status, code: code.query, ...ec2ErrorBody(code.query, message, requestId, false) };
  }
}

const internalError = (protocol: "ec2" | "s3" | "ebs", requestId: string) =>
  protocolError(protocol, requestId, 500, { query: "InternalError", json: "InternalServerException" }, "We encountered an internal error. Please try again.");

const unavailableError = (protocol: "ec2" | "s3" | "ebs", requestId: string) =>
  protocolError(protocol, requestId, 503, { query: "ServiceUnavailable", json: "ServiceUnavailableException" }, "The request has failed due to a temporary failure of the server.");

function send(
  res: ServerResponse,
  status: number,
  contentType: string,
  body: string | readonly Buffer[],
  requestId: string,
  extra: Record<string, string> = {},
) {
  const headers: Record<string, string | number> = {
    ...extra,
    "content-type": contentType,
    "content-length": typeof body === "string" ? Buffer.byteLength(body) : body.reduce((sum, piece) => sum + piece.length, 0),
    "x-amzn-requestid": requestId,
    server: "Kiln",
  };
  // A body that was refused unread (too large) leaves the connection unusable: close it.
  if (status === 413) headers.connection = "close";
  res.writeHead(status, headers);
  if (typeof body === "string") return void res.end(body);
  for (const piece of body) res.write(piece);
  res.end();
}
