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
  return { url, request: { method: r.method ?? (r.body !== undefined ? "POST" : "GET"), protocol: "http:", hostname: url.hostname, port: Number(url.port), path: r.path ?? "/", query: r.query ?? {}, headers, body: r.body } };
}

const queryString = (query: Record<string, string | string[] | null | undefined>) =>
  Object.entries(query)
    .flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map((value) => `${encodeURIComponent(k)}=${encodeURIComponent(value ?? "")}`))
    .join("&");

async function send(url: URL, request: { method: string; path: string; query?: Record<string, unknown>; headers: Record<string, string>; body?: string }): Promise<RawResponse> {
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
