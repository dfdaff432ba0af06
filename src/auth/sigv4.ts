// Signature Version 4 verification. Kiln recomputes the signature with @smithy/signature-v4 (the
// signer the AWS SDKs use, so canonicalisation matches theirs exactly) over the headers the
// caller says it signed, then compares in constant time.
import { createHash, timingSafeEqual } from "node:crypto";
import { Hash } from "@smithy/hash-node";
import { SignatureV4 } from "@smithy/signature-v4";
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
}

const MAX_SKEW_MS = 5 * 60 * 1000;
const MAX_PRESIGN_SECONDS = 7 * 24 * 3600;
const UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD";
const PRESIGN_PARAMS = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token"];
const sha256 = Hash.bind(null, "sha256");

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
  // One signer per credential keeps @smithy's signing-key cache warm across requests.
  private readonly signers = new Map<string, SignatureV4>();

  constructor(private readonly accounts: AccountDirectory, private readonly now: () => number = Date.now) {}

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
    if (algorithm !== "AWS4-HMAC-SHA256") {
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
    this.checkClaimedPayloadHash(request, scope);
    const signer = this.signer(credential, scope, signedHeaders.includes("x-amz-security-token") ? header(request.headers, "x-amz-security-token") : undefined);
    const signed = await signer.sign(
      { method: request.method, protocol: "http:", hostname: "", path: request.path, query: request.query, headers, body: request.body },
      { signingDate, signingRegion: scope.region, signingService: scope.service, signableHeaders: new Set(signedHeaders) },
    );
    const expected = /Signature=([0-9a-f]+)/.exec((signed as { headers: Record<string, string> }).headers.authorization ?? "")?.[1] ?? "";
    if (!sameSignature(expected, fields.get("Signature")!)) throw mismatch();
    return { accessKeyId: scope.accessKeyId, accountId: credential.accountId, region: scope.region, service: scope.service };
  }

  private async verifyPresigned(request: SignedRequest): Promise<Caller> {
    const param = (name: string) => {
      const value = request.query[name];
      if (typeof value !== "string" || value === "") throw incomplete(`A presigned request requires the query parameter ${name}.`);
      return value;
    };
    if (param("X-Amz-Algorithm") !== "AWS4-HMAC-SHA256") throw incomplete("X-Amz-Algorithm must be AWS4-HMAC-SHA256.");
    const scope = parseCredential(param("X-Amz-Credential"));
    const amzDate = param("X-Amz-Date");
    const signingDate = parseAmzDate(amzDate);
    this.checkScopeDate(scope, amzDate);
    const expiresIn = Number(param("X-Amz-Expires"));
    if (!Number.isInteger(expiresIn) || expiresIn < 1 || expiresIn > MAX_PRESIGN_SECONDS) {
      throw new ApiError("AuthFailure", "X-Amz-Expires must be a whole number of seconds between 1 and 604800.");
    }
    const now = this.now();
    if (now > signingDate.getTime() + expiresIn * 1000) throw new ApiError("RequestExpired", "Request has expired: the presigned URL is past its X-Amz-Expires.");
    if (signingDate.getTime() - now > MAX_SKEW_MS) throw new ApiError("RequestExpired", `Request has expired: the signature's time ${amzDate} is in the future.`);
    const provided = param("X-Amz-Signature");
    const credential = this.credential(scope);
    this.checkClaimedPayloadHash(request, scope);
    const signedHeaders = param("X-Amz-SignedHeaders").split(";");
    const query: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(request.query)) if (!PRESIGN_PARAMS.includes(name)) query[name] = value;
    const token = request.query["X-Amz-Security-Token"];
    const signer = this.signer(credential, scope, typeof token === "string" ? token : undefined);
    // Presigners hash the payload (botocore, for non-S3) or declare it unsigned (S3): accept either.
    for (const payload of [undefined, UNSIGNED_PAYLOAD]) {
      const headers = this.signedHeaderValues(request, signedHeaders);
      const internal = new Set(payload ? ["x-amz-content-sha256"] : []);
      if (payload) headers["x-amz-content-sha256"] = payload;
      const presigned = await signer.presign(
        { method: request.method, protocol: "http:", hostname: "", path: request.path, query, headers, body: request.body },
        {
          signingDate,
          expiresIn,
          signingRegion: scope.region,
          signingService: scope.service,
          signableHeaders: new Set(signedHeaders),
          unhoistableHeaders: new Set([...signedHeaders, ...internal]),
          unsignableHeaders: internal,
        },
      );
      const expected = presigned.query?.["X-Amz-Signature"];
      if (typeof expected === "string" && sameSignature(expected, provided)) {
        return { accessKeyId: scope.accessKeyId, accountId: credential.accountId, region: scope.region, service: scope.service };
      }
    }
    throw mismatch();
  }

  /**
   * The signer takes a signed x-amz-content-sha256 header as the payload's hash. Outside S3 (whose
   * own layer checks streamed bodies) the body is whole here: it must hash to what the header
   * claims. EBS block writes may declare their payload unsigned: x-amz-Checksum covers the block.
   */
  private checkClaimedPayloadHash(request: SignedRequest, scope: Scope) {
    const claimed = header(request.headers, "x-amz-content-sha256");
    if (claimed === undefined || scope.service === "s3") return;
    if (claimed === UNSIGNED_PAYLOAD && scope.service === "ebs") return;
    if (claimed !== createHash("sha256").update(request.body).digest("hex")) throw mismatch();
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

  private signer(credential: Credential, scope: Scope, sessionToken: string | undefined): SignatureV4 {
    const make = () =>
      new SignatureV4({
        credentials: { accessKeyId: credential.accessKeyId, secretAccessKey: credential.secretAccessKey, sessionToken },
        region: scope.region,
        service: scope.service,
        sha256,
        applyChecksum: false,
        // S3 signs the path as sent; every other service normalises and double-encodes it.
        uriEscapePath: scope.service !== "s3",
      });
    if (sessionToken !== undefined) return make();
    const key = `${credential.accessKeyId}\u0000${credential.secretAccessKey}\u0000${scope.service}`;
    let signer = this.signers.get(key);
    if (!signer) {
      if (this.signers.size >= 1024) this.signers.clear();
      signer = make();
      this.signers.set(key, signer);
    }
    return signer;
  }
}

function sameSignature(expected: string, provided: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(provided);
  return a.length === b.length && timingSafeEqual(a, b);
}
