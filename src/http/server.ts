// One node:http server. Each request gets an id, is routed by protocol (Kiln's own /_kiln/
// routes; S3, by its signing scope or a bucket.localhost host; SSM, by its X-Amz-Target; the EBS
// direct APIs under /snapshots; the EC2 Query API on /), and leaves one log line.
import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { yieldToLoop } from "../event-loop.js";
import type { Logger } from "../log.js";
import { isStoreUnavailable } from "../store/meta/database.js";
import { UnstorableTextError } from "../store/unstorable.js";
import type { Socket } from "node:net";
import type { AdminAnswer } from "./admin.js";
import { fromWebPage, pageMayRead } from "./browser.js";
import { ec2ErrorBody, type Ec2Answer, type Ec2Endpoint } from "./ec2.js";
import { parseUrl, type ParsedUrl } from "./url.js";
import { isEbsPath, type EbsAnswer } from "./ebs.js";
import { isS3Request, type S3Answer } from "./s3.js";
import { isSsmRequest, SSM_CONTENT_TYPE, ssmErrorBody, type SsmAnswer } from "./ssm.js";
import { s3ErrorXml, XML_TYPE } from "../protocol/s3/wire.js";

export interface Routes {
  ec2: Ec2Endpoint;
  ebs: (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string) => Promise<EbsAnswer>;
  s3: (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string) => Promise<S3Answer>;
  ssm: (req: IncomingMessage, res: ServerResponse, url: ParsedUrl, requestId: string) => Promise<SsmAnswer>;
  admin: (req: IncomingMessage, url: ParsedUrl) => Promise<AdminAnswer>;
}

export function createHttpServer(routes: Routes, logger: Logger): Server {
  // The SDKs keep idle connections open indefinitely; a server that closes one just as a client
  // reuses it resets that request. Holding idle connections for a minute, as AWS's endpoints
  // do, keeps that race away from clients that pause between calls (a test converting a disk, a
  // workflow step waiting on a timer).
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, keepAliveTimeout: 65_000, requestTimeout: 120_000, headersTimeout: 30_000 }, (req, res) => {
    void handle(req, res);
  });

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const started = process.hrtime.bigint();
    const requestId = randomUUID();
    const url = parseUrl(req.url ?? "/");
    let answer: Partial<Ec2Answer> & { status: number };
    let protocol: Protocol = "ec2";
    try {
      // Requests that arrive together begin in turn (yieldToLoop), not all in one turn of the
      // event loop; Kiln's own routes (health) are answered at once.
      if (!url.path.startsWith("/_kiln/")) await yieldToLoop();
      protocol = protocolOf(req, url);
      const page = fromWebPage(req);
      if (url.path.startsWith("/_kiln/")) {
        const admin = await routes.admin(req, url);
        answer = { status: admin.status };
        const { "content-type": contentType = "application/json", ...extra } = admin.headers ?? {};
        send(res, req, admin.status, contentType, admin.body, requestId, extra);
      } else if (page && !pageMayRead(req, protocol)) {
        const refused = protocolError(
          protocol,
          requestId,
          403,
          FORBIDDEN,
          `Kiln does not answer web pages: ${page}. Use an AWS SDK, the AWS CLI or another tool.`,
        );
        answer = { status: refused.status, errorCode: refused.code };
        send(res, req, refused.status, refused.contentType, refused.body, requestId, refused.headers);
      } else if (protocol === "s3") {
        answer = await routes.s3(req, res, url, requestId);
      } else if (protocol === "ssm") {
        answer = await routes.ssm(req, res, url, requestId);
      } else if (protocol === "ebs") {
        answer = await routes.ebs(req, res, url, requestId);
      } else if (url.path === "/") {
        answer = await routes.ec2.handle(req, url, requestId);
        send(res, req, answer.status, answer.contentType!, answer.body!, requestId);
      } else {
        answer = { status: 404, errorCode: "NotFound" };
        const error = ec2ErrorBody("NotFound", `Kiln serves no resource at ${url.path}.`, requestId, false);
        send(res, req, 404, error.contentType, error.body, requestId);
      }
    } catch (error) {
      // Never a stack trace on the wire: log it, answer the protocol's own error. Text the store
      // cannot keep is the client's mistake; a metadata or object store out of reach is the
      // client's to retry (ServiceUnavailable); anything else is ours.
      const unstorable = error instanceof UnstorableTextError;
      const unavailable = !unstorable && isStoreUnavailable(error);
      if (unavailable) logger.warn({ requestId, err: error }, "a store is unavailable");
      else if (!unstorable) logger.error({ requestId, err: error }, "request failed");
      const failed = unstorable
        ? protocolError(protocol, requestId, 400, BAD_VALUE, error.message)
        : unavailable
          ? unavailableError(protocol, requestId)
          : internalError(protocol, requestId);
      answer = { status: failed.status, errorCode: failed.code };
      if (!res.headersSent) send(res, req, failed.status, failed.contentType, failed.body, requestId, failed.headers);
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

  // A request node:http cannot parse (a request line and headers past its limit, bytes that are
  // no HTTP) still gets an answer its client can read: the protocol's error, not an empty 4xx.
  server.on("clientError", (error: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Socket) => {
    if (!socket.writable || error.code === "ECONNRESET") {
      socket.destroy();
      return;
    }
    const requestId = randomUUID();
    const head = parseRequestHead(error.rawPacket);
    const tooLarge = error.code === "HPE_HEADER_OVERFLOW";
    const refused = tooLarge
      ? protocolError(
          head.protocol,
          requestId,
          400,
          HEADERS_TOO_LARGE,
          `The request line and headers are larger than the ${MAX_HEADER_BYTES} bytes Kiln reads; send large EC2 requests as a form-encoded POST body.`,
        )
      : protocolError(head.protocol, requestId, 400, BAD_REQUEST, "The request is not well-formed HTTP.");
    logger.info({ requestId, method: head.method, path: head.path, status: refused.status, error: refused.code }, "request");
    const headers = {
      ...refused.headers,
      "content-type": refused.contentType,
      "content-length": Buffer.byteLength(refused.body),
      "x-amzn-requestid": requestId,
      server: "Kiln",
      connection: "close",
    };
    const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}`);
    socket.end(`HTTP/1.1 ${refused.status} Bad Request\r\n${lines.join("\r\n")}\r\n\r\n${refused.body}`);
  });

  return server;
}

/** node:http's own ceiling on a request's line and headers (its default, --max-http-header-size). */
const MAX_HEADER_BYTES = 16 * 1024;

/** What can be read of a request node:http refused: its method, its path, and so (as for any request) its protocol. */
function parseRequestHead(raw: Buffer | undefined): { method?: string; path?: string; protocol: Protocol } {
  const [requestLine = "", ...headerLines] = (raw?.toString("latin1") ?? "").split("\r\n");
  const line = /^([A-Z]+) (\/\S*)/.exec(requestLine);
  if (!line) return { protocol: "ec2" };
  const url = parseUrl(line[2]!);
  const headers: Record<string, string> = {};
  for (const header of headerLines) {
    const colon = header.indexOf(":");
    if (colon > 0) headers[header.slice(0, colon).trim().toLowerCase()] = header.slice(colon + 1).trim();
  }
  return { method: line[1], path: url.path, protocol: protocolOf({ headers } as unknown as IncomingMessage, url) };
}

interface ErrorAnswer {
  status: number;
  code: string;
  contentType: string;
  body: string;
  headers?: Record<string, string>;
}

export type Protocol = "ec2" | "s3" | "ebs" | "ssm";

function protocolOf(req: IncomingMessage, url: ParsedUrl): Protocol {
  if (isS3Request(req, url)) return "s3";
  if (isSsmRequest(req)) return "ssm";
  return isEbsPath(url.path) ? "ebs" : "ec2";
}

/** An error's code in each protocol: EC2's and S3's XML, the EBS direct APIs' and SSM's JSON type. */
type ProtocolCodes = Record<Protocol, string>;

const INTERNAL: ProtocolCodes = { ec2: "InternalError", s3: "InternalError", ebs: "InternalServerException", ssm: "InternalServerError" };
const UNAVAILABLE: ProtocolCodes = { ec2: "ServiceUnavailable", s3: "ServiceUnavailable", ebs: "ServiceUnavailableException", ssm: "ServiceUnavailable" };
const FORBIDDEN: ProtocolCodes = { ec2: "UnauthorizedOperation", s3: "AccessDenied", ebs: "AccessDeniedException", ssm: "AccessDeniedException" };
const HEADERS_TOO_LARGE: ProtocolCodes = {
  ec2: "RequestHeaderSectionTooLarge",
  s3: "RequestHeaderSectionTooLarge",
  ebs: "ValidationException",
  ssm: "ValidationException",
};
const BAD_VALUE: ProtocolCodes = { ec2: "InvalidParameterValue", s3: "InvalidArgument", ebs: "ValidationException", ssm: "ValidationException" };
const BAD_REQUEST: ProtocolCodes = { ec2: "InvalidRequest", s3: "InvalidRequest", ebs: "ValidationException", ssm: "ValidationException" };

/** An error as each protocol's clients expect to read one. */
function protocolError(protocol: Protocol, requestId: string, status: number, codes: ProtocolCodes, message: string): ErrorAnswer {
  const code = codes[protocol];
  switch (protocol) {
    case "s3":
      return { status, code, contentType: XML_TYPE, body: s3ErrorXml(code, message, requestId) };
    case "ebs":
      return { status, code, contentType: "application/json", body: JSON.stringify({ Message: message }), headers: { "x-amzn-ErrorType": code } };
    case "ssm":
      return { status, code, contentType: SSM_CONTENT_TYPE, body: ssmErrorBody(code, message), headers: { "x-amzn-ErrorType": code } };
    case "ec2":
      return { status, code, ...ec2ErrorBody(code, message, requestId, false) };
  }
}

const internalError = (protocol: Protocol, requestId: string) =>
  protocolError(protocol, requestId, 500, INTERNAL, "We encountered an internal error. Please try again.");

const unavailableError = (protocol: Protocol, requestId: string) =>
  protocolError(protocol, requestId, 503, UNAVAILABLE, "The request has failed due to a temporary failure of the server.");

function send(
  res: ServerResponse,
  req: IncomingMessage,
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
  // A body left unread (refused for its size, or before it was needed) leaves the connection unusable: close it.
  if (!req.complete) headers.connection = "close";
  res.writeHead(status, headers);
  if (typeof body === "string") return void res.end(body);
  for (const piece of body) res.write(piece);
  res.end();
}
