// Signature Version 4 verification. Kiln rebuilds the canonical request and derives the signing
// key with @smithy/signature-v4 (the code the AWS SDKs sign with, so canonicalisation matches
// theirs exactly) over the headers and query the caller says it signed, hashes that into the
// string to sign, and compares the one final HMAC in constant time.
//
// Verification runs on every request, so it keeps off the signer's general sign()/presign()
// path: those clone the request, re-derive a cache key with an extra HMAC and go through a
// promise per hash. Derived keys are cached here, per credential, day, region and service.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { Hash } from "@smithy/hash-node";
import { createScope, getCanonicalHeaders, getSigningKey, SignatureV4Base } from "@smithy/signature-v4";
import { ApiError } from "../protocol/errors.js";
import type { AccountDirectory, Credential } from "./accounts.js";

export interface SignedRequest {
  method: string;
  /** Path without the query string, as sent. */
  path: string;
  /** Query parameters, decoded; repeated names hold arrays. */
  query: Record<string, string | string[]>;
  /** Lower-case header names, as node:http gives them. */
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
}

export interface Caller {
  accessKeyId: string;
  accountId: string;
  region: string;
  service: string;
  /** For a request signed in its Authorization header: what a streamed body's chunk signatures chain on. */
  signing?: ChunkSigning;
}

/** A verified header signature, as S3's signed aws-chunked bodies chain their chunk signatures on it. */
export interface ChunkSigning {
  key: Uint8Array;
  amzDate: string;
  /** date/region/service/aws4_request */
  scope: string;
  seedSignature: string;
}

const MAX_SKEW_MS = 5 * 60 * 1000;
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;
const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
const ALGORITHM = "AWS4-HMAC-SHA256";
const sha256 = Hash.bind(null, "sha256");
const sha256Hex = (data: string | Uint8Array) => createHash("sha256").update(data).digest("hex");
const MAX_CACHED_KEYS = 1024;

/** The library's canonical request (its builder is protected: a subclass exposes it). */
class Canonicaliser extends SignatureV4Base {
  constructor(uriEscapePath: boolean) {
    super({ credentials: { accessKeyId: "", secretAccessKey: "" }, region: "", service: "", sha256, uriEscapePath });
  }

  canonicalRequest(...args: Parameters<SignatureV4Base["createCanonicalRequest"]>): string {
    return this.createCanonicalRequest(...args);
  }
}
// S3 signs the path as sent; every other service normalises and double-encodes it.
const canonicalisers = { escaped: new Canonicaliser(true), asSent: new Canonicaliser(false) };

const incomplete = (message: string) => new ApiError("IncompleteSignature", message);
const mismatch = () =>
  new ApiError(
    "SignatureDoesNotMatch",
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
  );

interface Scope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

function parseCredential(credential: string): Scope {
  const parts = credential.split("/");
  if (parts.length !== 5 || parts[4] !== "aws4_request" || parts.some((p) => p === "")) {
    throw incomplete(`Credential should be scoped to a valid region, service and date: '${credential}'.`);
  }
  const [accessKeyId, date, region, service] = parts as [string, string, string, string];
  return { accessKeyId, date, region, service };
}

function parseAmzDate(value: string | undefined): Date {
  const match = value && /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (!match) throw incomplete(`X-Amz-Date must be in the ISO8601 basic format (yyyyMMdd'T'HHmmss'Z'); got '${value ?? ""}'.`);
  const [, y, mo, d, h, mi, s] = match.map(Number) as number[];
  return new Date(Date.UTC(y!, mo! - 1, d!, h, mi, s));
}

const header = (headers: SignedRequest["headers"], name: string) => {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : value;
};

export class SignatureVerifier {
  private readonly signingKeys = new Map<string, Uint8Array>();

  constructor(
    private readonly accounts: AccountDirectory,
    private readonly now: () => number = Date.now,
  ) {}

  /** True when the request carries any form of SigV4 authentication. */
  static isSigned(request: Pick<SignedRequest, "headers" | "query">): boolean {
    return request.headers.authorization !== undefined || request.query["X-Amz-Signature"] !== undefined || request.query["X-Amz-Credential"] !== undefined;
  }

  async verify(request: SignedRequest): Promise<Caller> {
    const authorization = header(request.headers, "authorization");
    if (authorization !== undefined) return this.verifyHeader(request, authorization);
    if (request.query["X-Amz-Signature"] !== undefined || request.query["X-Amz-Credential"] !== undefined) return this.verifyPresigned(request);
    throw new ApiError("MissingAuthenticationToken", "The request must contain either a valid (registered) AWS access key ID or X.509 certificate.");
  }

  private async verifyHeader(request: SignedRequest, authorization: string): Promise<Caller> {
    const [algorithm, ...rest] = authorization.trim().split(/\s+/);
    if (algorithm !== ALGORITHM) {
      throw incomplete(`Unsupported authorization type '${algorithm}': Kiln verifies AWS4-HMAC-SHA256 signatures.`);
    }
    const fields = new Map<string, string>();
    for (const part of rest.join("").split(",")) {
      const eq = part.indexOf("=");
      if (eq > 0) fields.set(part.slice(0, eq), part.slice(eq + 1));
    }
    for (const required of ["Credential", "SignedHeaders", "Signature"]) {
      if (!fields.get(required)) throw incomplete(`Authorization header requires '${required}' parameter. Authorization=${authorization}`);
    }
    const scope = parseCredential(fields.get("Credential")!);
    const amzDate = header(request.headers, "x-amz-date");
    if (amzDate === undefined) throw incomplete("Authorization header requires existence of an 'X-Amz-Date' header.");
    const signingDate = parseAmzDate(amzDate);
    this.checkScopeDate(scope, amzDate);
    if (Math.abs(this.now() - signingDate.getTime()) > MAX_SKEW_MS) {
      throw new ApiError("RequestExpired", `Request has expired: the signature's time ${amzDate} is more than 5 minutes from the server's.`);
    }
    const credential = this.credential(scope);
    const signedHeaders = fields.get("SignedHeaders")!.split(";");
    const headers = this.signedHeaderValues(request, signedHeaders);
    let payloadHash: string;
    if (scope.service === "s3") payloadHash = s3PayloadHash(request);
    else {
      const bodyHash = this.checkClaimedPayloadHash(request, scope);
      payloadHash = headers["x-amz-content-sha256"] ?? bodyHash ?? sha256Hex(request.body);
    }
    const provided = fields.get("Signature")!;
    const key = await this.signingKey(credential, scope);
    const expected = this.signature(key, scope, amzDate, request, headers, signedHeaders, payloadHash);
    if (!sameSignature(expected, provided)) throw mismatch();
    const signing = { key, amzDate, scope: createScope(scope.date, scope.region, scope.service), seedSignature: provided };
    return { accessKeyId: scope.accessKeyId, accountId: credential.accountId, region: scope.region, service: scope.service, signing };
  }

  private async verifyPresigned(request: SignedRequest): Promise<Caller> {
    const param = (name: string) => {
      const value = request.query[name];
      if (typeof value !== "string" || value === "") throw incomplete(`A presigned request requires the query parameter ${name}.`);
      return value;
    };
    if (param("X-Amz-Algorithm") !== ALGORITHM) throw incomplete("X-Amz-Algorithm must be AWS4-HMAC-SHA256.");
    const scope = parseCredential(param("X-Amz-Credential"));
    const amzDate = param("X-Amz-Date");
    const signingDate = parseAmzDate(amzDate);
    this.checkScopeDate(scope, amzDate);
    const expiresIn = Number(param("X-Amz-Expires"));
    if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_PRESIGN_SECONDS) {
      throw new ApiError("AuthFailure", "X-Amz-Expires must be a whole number of seconds between 1 and 604800.");
    }
    const now = this.now();
    if (now > signingDate.getTime() + expiresIn * 1000)
      throw new ApiError("RequestExpired", "Request has expired: the presigned URL is past its X-Amz-Expires.");
    if (signingDate.getTime() - now > MAX_SKEW_MS)
      throw new ApiError("RequestExpired", `Request has expired: the signature's time ${amzDate} is in the future.`);
    const provided = param("X-Amz-Signature");
    const credential = this.credential(scope);
    const bodyHash = this.checkClaimedPayloadHash(request, scope);
    const signedHeaders = param("X-Amz-SignedHeaders").split(";");
    const headers = this.signedHeaderValues(request, signedHeaders);
    // Presigners hash the payload (botocore, for non-S3) or declare it unsigned (S3): accept either.
    // S3's body is not read yet: it is always unsigned here, or as its header claims.
    const claimed = headers["x-amz-content-sha256"];
    const candidates =
      claimed !== undefined ? [claimed] : scope.service === "s3" ? [UNSIGNED_PAYLOAD] : [bodyHash ?? sha256Hex(request.body), UNSIGNED_PAYLOAD];
    const key = await this.signingKey(credential, scope);
    for (const payloadHash of candidates) {
      const expected = this.signature(key, scope, amzDate, request, headers, signedHeaders, payloadHash);
      if (sameSignature(expected, provided)) {
        return { accessKeyId: scope.accessKeyId, accountId: credential.accountId, region: scope.region, service: scope.service };
      }
    }
    throw mismatch();
  }

  /** The signature the caller's secret gives this request: canonical request → string to sign → HMAC. */
  private signature(
    key: Uint8Array,
    scope: Scope,
    amzDate: string,
    request: SignedRequest,
    headers: Record<string, string>,
    signedHeaders: string[],
    payloadHash: string,
  ): string {
    const canonicaliser = scope.service === "s3" ? canonicalisers.asSent : canonicalisers.escaped;
    const canonicalRequest = canonicaliser.canonicalRequest(
      { method: request.method, protocol: "http:", hostname: "", path: request.path, query: request.query, headers },
      getCanonicalHeaders({ headers } as Parameters<typeof getCanonicalHeaders>[0], undefined, new Set(signedHeaders)),
      payloadHash,
    );
    const credentialScope = createScope(scope.date, scope.region, scope.service);
    const stringToSign = `${ALGORITHM}\n${amzDate}\n${credentialScope}\n${sha256Hex(canonicalRequest)}`;
    return createHmac("sha256", key).update(stringToSign).digest("hex");
  }

  private async signingKey(credential: Credential, scope: Scope): Promise<Uint8Array> {
    const cacheKey = `${credential.accessKeyId}\u0000${credential.secretAccessKey}\u0000${scope.date}\u0000${scope.region}\u0000${scope.service}`;
    let key = this.signingKeys.get(cacheKey);
    if (key === undefined) {
      key = await getSigningKey(sha256, credential, scope.date, scope.region, scope.service);
      if (this.signingKeys.size >= MAX_CACHED_KEYS) this.signingKeys.clear();
      this.signingKeys.set(cacheKey, key);
    }
    return key;
  }

  /**
   * A signed x-amz-content-sha256 header stands for the payload in the signature. Outside S3
   * (whose own layer checks streamed bodies) the body is whole here: it must hash to what the
   * header claims. EBS block writes may declare their payload unsigned: x-amz-Checksum covers the
   * block. Returns the body's hash when it had to compute it.
   */
  private checkClaimedPayloadHash(request: SignedRequest, scope: Scope): string | undefined {
    const claimed = header(request.headers, "x-amz-content-sha256");
    if (claimed === undefined || scope.service === "s3") return undefined;
    if (claimed === UNSIGNED_PAYLOAD && scope.service === "ebs") return undefined;
    const bodyHash = sha256Hex(request.body);
    if (claimed !== bodyHash) throw mismatch();
    return bodyHash;
  }

  private checkScopeDate(scope: Scope, amzDate: string) {
    if (scope.date !== amzDate.slice(0, 8)) {
      throw mismatch();
    }
  }

  private credential(scope: Scope): Credential {
    const credential = this.accounts.lookup(scope.accessKeyId);
    if (!credential) throw new ApiError("AuthFailure", "AWS was not able to validate the provided access credentials");
    return credential;
  }

  private signedHeaderValues(request: SignedRequest, signedHeaders: string[]): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const name of signedHeaders) {
      const value = header(request.headers, name);
      if (value === undefined) throw incomplete(`The header '${name}' is listed in SignedHeaders but is not in the request.`);
      headers[name] = value;
    }
    return headers;
  }
}

/**
 * S3 signs whatever x-amz-content-sha256 says (a hash, UNSIGNED-PAYLOAD or a STREAMING-… form),
 * and S3's own layer checks the body against it as it streams: the verifier never needs it.
 */
function s3PayloadHash(request: SignedRequest): string {
  const claimed = header(request.headers, "x-amz-content-sha256");
  if (claimed === undefined) throw new ApiError("InvalidRequest", "Missing required header for this request: x-amz-content-sha256");
  return claimed;
}

function sameSignature(expected: string, provided: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(provided);
  return a.length === b.length && timingSafeEqual(a, b);
}
