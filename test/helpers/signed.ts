// Raw HTTP requests signed with SigV4, for tests that shape the request themselves (bodies in
// XML or JSON, odd parameters, presigned URLs, stale dates).
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";

export interface RawRequest {
  method?: "GET" | "POST" | "PUT" | "DELETE" | "HEAD";
  /** Path, "/" unless given (S3 requests name a bucket and key). */
  path?: string;
  /** Query parameters (the signer encodes them). */
  query?: Record<string, string>;
  body?: string;
  contentType?: string;
  headers?: Record<string, string>;
  accessKeyId?: string;
  secretAccessKey?: string;
  region?: string;
  service?: string;
  signingDate?: Date;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
}

function signer(r: RawRequest) {
  return new SignatureV4({
    credentials: { accessKeyId: r.accessKeyId ?? "test", secretAccessKey: r.secretAccessKey ?? "test" },
    region: r.region ?? "us-east-1",
    service: r.service ?? "ec2",
    sha256: Hash.bind(null, "sha256"),
    // S3 signs the path as sent.
    uriEscapePath: r.service !== "s3",
  });
}

function target(baseUrl: string, r: RawRequest) {
  const url = new URL(baseUrl);
  const headers: Record<string, string> = { host: url.host, ...(r.headers ?? {}) };
  if (r.body !== undefined) headers["content-type"] = r.contentType ?? "application/x-www-form-urlencoded; charset=utf-8";
  return {
    url,
    request: {
      method: r.method ?? (r.body !== undefined ? "POST" : "GET"),
      protocol: "http:",
      hostname: url.hostname,
      port: Number(url.port),
      path: r.path ?? "/",
      query: r.query ?? {},
      headers,
      body: r.body,
    },
  };
}

const queryString = (query: Record<string, string | string[] | null | undefined>) =>
  Object.entries(query)
    .flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((value) => `${encodeURIComponent(k)}=${encodeURIComponent(value ?? "")}`))
    .join("&");

async function send(
  url: URL,
  request: { method: string; path: string; query?: Record<string, unknown>; headers: Record<string, string>; body?: string },
): Promise<RawResponse> {
  const qs = queryString((request.query ?? {}) as Record<string, string>);
  const headers = { ...request.headers };
  delete headers.host;
  const response = await fetch(`${url.origin}${request.path}${qs ? `?${qs}` : ""}`, { method: request.method, headers, body: request.body });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** A request signed in the Authorization header. */
export async function signedRequest(baseUrl: string, r: RawRequest): Promise<RawResponse> {
  const { url, request } = target(baseUrl, r);
  const signed = await signer(r).sign(request, { signingDate: r.signingDate });
  return send(url, signed as typeof request);
}

/** A presigned URL (query-string signature) for a GET request. */
export async function presignedUrl(baseUrl: string, r: RawRequest & { expiresIn?: number }): Promise<string> {
  const { url, request } = target(baseUrl, { ...r, method: "GET", body: undefined });
  const presigned = await signer(r).presign(request, { signingDate: r.signingDate, expiresIn: r.expiresIn ?? 300 });
  return `${url.origin}/?${queryString(presigned.query as Record<string, string>)}`;
}

/** Form-encodes EC2 Query parameters. */
export const form = (params: Record<string, string>) => new URLSearchParams(params).toString();

/** The `<Code>` of an EC2 error envelope. */
export const errorCode = (xml: string) => /<Code>([^<]*)<\/Code>/.exec(xml)?.[1];

/**
 * A PUT whose body is sent aws-chunked with chunk signatures (STREAMING-AWS4-HMAC-SHA256-PAYLOAD),
 * as SDKs stream signed uploads: each chunk's signature chains on the one before, starting from
 * the request's own. `tamper` changes a byte after signing, to prove the chain is checked.
 */
export async function signedChunkedPut(
  baseUrl: string,
  r: { path: string; chunks: Buffer[]; tamper?: boolean; headers?: Record<string, string> },
): Promise<RawResponse> {
  const { createHash, createHmac } = await import("node:crypto");
  const signingDate = new Date();
  const decodedLength = r.chunks.reduce((sum, c) => sum + c.length, 0);
  const { url, request } = target(baseUrl, {
    method: "PUT",
    path: r.path,
    service: "s3",
    headers: {
      "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
      "content-encoding": "aws-chunked",
      "x-amz-decoded-content-length": String(decodedLength),
      ...(r.headers ?? {}),
    },
  });
  const signed = await signer({ service: "s3" }).sign(request, { signingDate });
  const seed = /Signature=([0-9a-f]{64})/.exec(String(signed.headers.authorization))![1]!;
  const amzDate = String(signed.headers["x-amz-date"]);
  const date = amzDate.slice(0, 8);
  const scope = `${date}/us-east-1/s3/aws4_request`;
  const hmac = (key: Buffer | string, data: string) => createHmac("sha256", key).update(data).digest();
  const key = hmac(hmac(hmac(hmac("AWS4test", date), "us-east-1"), "s3"), "aws4_request");
  const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
  let previous = seed;
  const parts: Buffer[] = [];
  for (const chunk of [...r.chunks, Buffer.alloc(0)]) {
    const stringToSign = ["AWS4-HMAC-SHA256-PAYLOAD", amzDate, scope, previous, sha(""), sha(chunk)].join("\n");
    previous = createHmac("sha256", key).update(stringToSign).digest("hex");
    parts.push(Buffer.from(`${chunk.length.toString(16)};chunk-signature=${previous}\r\n`), chunk, Buffer.from("\r\n"));
  }
  const body = Buffer.concat(parts);
  const firstData = body.indexOf("\r\n") + 2;
  if (r.tamper) body[firstData] = body[firstData]! ^ 1;
  const headers: Record<string, string> = { ...(signed.headers as Record<string, string>), "content-length": String(body.length) };
  delete headers.host;
  const response = await fetch(`${url.origin}${r.path}`, { method: "PUT", headers, body });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** The headers a signed request carries (for tests that write the request themselves, on a raw socket). */
export async function signedHeaders(baseUrl: string, r: RawRequest): Promise<Record<string, string>> {
  const { request } = target(baseUrl, r);
  const signed = await signer(r).sign(request, { signingDate: r.signingDate });
  return signed.headers as Record<string, string>;
}
