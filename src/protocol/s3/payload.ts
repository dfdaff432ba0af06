// An S3 request body as a stream of its decoded bytes, checked as it passes: aws-chunked framing
// and chunk signatures undone, the signed SHA-256, Content-MD5 and any flexible checksum (header or
// trailer) compared when it ends. A body that fails a check errors the stream before it ends, so
// whatever consumes it (a blob being written) never completes with bad data.
import { createHash, type Hash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { ApiError } from "../errors.js";
import type { ChunkSigning } from "../../auth/sigv4.js";
import { AwsChunkedDecoder, STREAMING_PAYLOADS } from "./aws-chunked.js";
import {
  badDigest,
  checksumAlgorithm,
  checksumHeader,
  CHECKSUM_ALGORITHMS,
  declaredChecksum,
  declaredMd5,
  runningChecksum,
  type ChecksumAlgorithm,
  type RunningChecksum,
} from "./checksums.js";

export interface PayloadSummary {
  size: number;
  md5: Buffer;
  /** The flexible checksum computed over the body, when the request named an algorithm. */
  checksum?: { algorithm: ChecksumAlgorithm; value: string };
}

export interface Payload {
  /** The body's bytes; errors with an ApiError when a check fails. */
  stream: Readable;
  /** How many bytes the body says it holds (Content-Length, or the decoded length of aws-chunked); the stream errors if it holds another number. */
  length?: number;
  /** Resolves once the stream has ended and every check passed. */
  summary(): PayloadSummary;
}

const header = (req: IncomingMessage, name: string) => {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : value;
};

/** The flexible checksum a request carries or announces: its algorithm, and the value when it came as a header. */
function requestedChecksum(req: IncomingMessage): { algorithm: ChecksumAlgorithm; declared?: string; inTrailer: boolean } | undefined {
  const trailer = header(req, "x-amz-trailer")?.trim().toLowerCase();
  if (trailer) {
    const algorithm = CHECKSUM_ALGORITHMS.find((a) => checksumHeader(a) === trailer);
    if (!algorithm) throw new ApiError("InvalidRequest", `The trailer ${trailer} is not a checksum Kiln knows.`);
    return { algorithm, inTrailer: true };
  }
  for (const algorithm of CHECKSUM_ALGORITHMS) {
    const value = header(req, checksumHeader(algorithm));
    if (value !== undefined) return { algorithm, declared: declaredChecksum(algorithm, value), inTrailer: false };
  }
  const sdkAlgorithm = checksumAlgorithm(header(req, "x-amz-sdk-checksum-algorithm"));
  return sdkAlgorithm ? { algorithm: sdkAlgorithm, inTrailer: false } : undefined;
}

class PayloadChecks extends Transform {
  size = 0;
  private readonly md5 = createHash("md5");
  private readonly sha256: Hash | undefined;
  private readonly checksum: RunningChecksum | undefined;
  result: PayloadSummary | undefined;

  constructor(
    private readonly expect: {
      sha256?: string;
      md5?: string;
      checksum?: ReturnType<typeof requestedChecksum>;
      length?: number;
      maxSize: number;
      trailers?: () => Map<string, string>;
    },
  ) {
    super({ highWaterMark: 1 << 20 });
    this.sha256 = expect.sha256 ? createHash("sha256") : undefined;
    this.checksum = expect.checksum ? runningChecksum(expect.checksum.algorithm) : undefined;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    this.size += chunk.length;
    if (this.size > this.expect.maxSize) return callback(new ApiError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"));
    this.md5.update(chunk);
    this.sha256?.update(chunk);
    this.checksum?.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback) {
    this.finish().then(
      () => callback(),
      (error: Error) => callback(error),
    );
  }

  private async finish() {
    const { expect } = this;
    if (expect.length !== undefined && this.size !== expect.length)
      throw new ApiError("IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.");
    if (this.sha256 && this.sha256.digest("hex") !== expect.sha256) {
      throw new ApiError("XAmzContentSHA256Mismatch", "The provided 'x-amz-content-sha256' header does not match what was computed.");
    }
    const md5 = this.md5.digest();
    if (expect.md5 !== undefined && md5.toString("base64") !== expect.md5)
      throw new ApiError("BadDigest", "The Content-MD5 you specified did not match what we received.");
    let checksum: PayloadSummary["checksum"];
    if (this.checksum && expect.checksum) {
      const { algorithm } = expect.checksum;
      const value = (await this.checksum.digest()).toString("base64");
      const declared = expect.checksum.inTrailer ? expect.trailers?.().get(checksumHeader(algorithm)) : expect.checksum.declared;
      if (expect.checksum.inTrailer && declared === undefined)
        throw new ApiError("InvalidRequest", `The ${checksumHeader(algorithm)} trailer was announced but not sent.`);
      if (declared !== undefined && declared !== value) throw badDigest(algorithm);
      checksum = { algorithm, value };
    }
    this.result = { size: this.size, md5, checksum };
  }
}

/**
 * The request's body as a checked stream. `signing` is the verified request signature, which a
 * STREAMING-AWS4-HMAC-SHA256-PAYLOAD body's chunks chain on.
 */
export function openPayload(req: IncomingMessage, signing: ChunkSigning | undefined, maxSize: number, defaultChecksum?: ChecksumAlgorithm): Payload {
  const contentSha256 = header(req, "x-amz-content-sha256");
  const md5 = header(req, "content-md5");
  const requested = requestedChecksum(req);
  if (requested && defaultChecksum && requested.algorithm !== defaultChecksum) {
    throw new ApiError(
      "InvalidRequest",
      `Checksum Type mismatch occurred, expected checksum Type: ${defaultChecksum.toLowerCase()}, actual checksum Type: ${requested.algorithm.toLowerCase()}`,
    );
  }
  const checksum = requested ?? (defaultChecksum ? { algorithm: defaultChecksum, inTrailer: false } : undefined);
  const streaming = contentSha256 !== undefined && STREAMING_PAYLOADS.includes(contentSha256);
  const contentLength = header(req, "content-length");
  const decodedLength = header(req, "x-amz-decoded-content-length");
  const length = streaming ? decodedLength : contentLength;
  if (streaming && contentSha256 !== "STREAMING-UNSIGNED-PAYLOAD-TRAILER" && !signing) {
    throw new ApiError("InvalidRequest", `A ${contentSha256} body needs a request signed in the Authorization header.`);
  }
  const decoder = streaming ? new AwsChunkedDecoder(contentSha256 === "STREAMING-UNSIGNED-PAYLOAD-TRAILER" ? undefined : signing) : undefined;
  const declaredLength = length !== undefined && /^\d+$/.test(length) ? Number(length) : undefined;
  const checks = new PayloadChecks({
    sha256: contentSha256 !== undefined && /^[0-9a-f]{64}$/.test(contentSha256) ? contentSha256 : undefined,
    md5: md5 === undefined ? undefined : declaredMd5(md5),
    checksum,
    length: declaredLength,
    maxSize,
    trailers: decoder ? () => decoder.trailers : undefined,
  });
  // Piped, not pipeline()d: a failed check must not destroy the request, whose socket still
  // carries the error answer. Whoever consumes `checks` learns of its error from the stream's
  // errored state (pipeline and finished read it), even if it failed before they attached.
  checks.on("error", () => {});
  if (decoder) {
    req.pipe(decoder).pipe(checks);
    decoder.on("error", (error) => checks.destroy(error));
  } else {
    req.pipe(checks);
  }
  req.on("error", (error) => checks.destroy(error));
  req.on("close", () => {
    if (!req.complete) checks.destroy(new ApiError("IncompleteBody", "The request body terminated unexpectedly"));
  });
  return {
    stream: checks,
    length: declaredLength,
    summary() {
      if (!checks.result) throw new Error("the payload has not ended");
      return checks.result;
    },
  };
}

/** A small body (an XML document) read whole through the same checks, up to `limit` bytes. */
export async function readPayload(req: IncomingMessage, signing: ChunkSigning | undefined, limit: number): Promise<Buffer> {
  const payload = openPayload(req, signing, limit);
  const chunks: Buffer[] = [];
  for await (const chunk of payload.stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
