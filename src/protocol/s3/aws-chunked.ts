// aws-chunked bodies, as S3 clients stream them: `<hex size>[;chunk-signature=<sig>]\r\n<data>\r\n`
// … a zero-size chunk, then optional trailers (`x-amz-checksum-crc32:<b64>\r\n`, and for signed
// streams `x-amz-trailer-signature:<sig>\r\n`) and a blank line. The decoder passes the data on,
// verifies each chunk's signature as it ends (each chains on the one before, starting from the
// request's own), and keeps the trailers for the caller.
import { createHash, createHmac, timingSafeEqual, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import type { ChunkSigning } from "../../auth/sigv4.js";
import { ApiError } from "../errors.js";

export const STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD";
export const STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER";
export const STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER";
export const STREAMING_PAYLOADS = [STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER];

const EMPTY_SHA256 = createHash("sha256").digest("hex");
const MAX_LINE = 4096;
const MAX_TRAILER_BYTES = 16 * 1024;
const CRLF = Buffer.from("\r\n");

const incomplete = () => new ApiError("IncompleteBody", "The request body terminated unexpectedly");
const malformed = (what: string) => new ApiError("InvalidArgument", `The aws-chunked body is malformed: ${what}.`);
const badChunkSignature = () =>
  new ApiError("SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided for a chunk of the body.");

type State = "size" | "data" | "data-end" | "trailer" | "done";

export class AwsChunkedDecoder extends Transform {
  /** Trailer headers (lower-case names), once the body has ended. */
  readonly trailers = new Map<string, string>();
  /** Decoded bytes passed on. */
  decodedLength = 0;
  private state: State = "size";
  private pending = Buffer.alloc(0);
  private remaining = 0;
  private chunkSignature: string | undefined;
  private chunkHash: Hash | undefined;
  private previousSignature: string | undefined;
  private trailerBytes = 0;
  private trailerText = "";

  constructor(private readonly signing: ChunkSigning | undefined) {
    super();
    this.previousSignature = signing?.seedSignature;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
    try {
      this.consume(chunk);
      callback();
    } catch (error) {
      callback(error as Error);
    }
  }

  override _flush(callback: TransformCallback) {
    callback(this.state === "done" ? undefined : incomplete());
  }

  private consume(input: Buffer) {
    let data = this.pending.length ? Buffer.concat([this.pending, input]) : input;
    this.pending = Buffer.alloc(0);
    while (data.length > 0) {
      if (this.state === "data") {
        const take = Math.min(this.remaining, data.length);
        const piece = data.subarray(0, take);
        this.chunkHash?.update(piece);
        this.decodedLength += take;
        this.push(piece);
        this.remaining -= take;
        data = data.subarray(take);
        if (this.remaining === 0) this.state = "data-end";
        continue;
      }
      if (this.state === "done") return; // S3 ignores what follows the final blank line.
      const end = data.indexOf(CRLF);
      if (end < 0) {
        if (data.length > MAX_LINE) throw malformed("a chunk header or trailer line is too long");
        this.pending = Buffer.from(data);
        return;
      }
      const line = data.subarray(0, end).toString("latin1");
      data = data.subarray(end + 2);
      this.line(line);
    }
  }

  private line(line: string) {
    switch (this.state) {
      case "data-end":
        if (line !== "") throw malformed("chunk data is longer than its declared size");
        this.endChunk();
        this.state = "size";
        return;
      case "size": {
        const [sizeText = "", ...extensions] = line.split(";");
        if (!/^[0-9a-fA-F]{1,16}$/.test(sizeText)) throw malformed(`'${line.slice(0, 64)}' is not a chunk size`);
        const size = parseInt(sizeText, 16);
        this.chunkSignature = extensions.find((e) => e.startsWith("chunk-signature="))?.slice("chunk-signature=".length);
        if (this.signing && this.chunkSignature === undefined) throw badChunkSignature();
        this.chunkHash = this.signing ? createHash("sha256") : undefined;
        if (size === 0) {
          this.endChunk();
          this.state = "trailer";
        } else {
          this.remaining = size;
          this.state = "data";
        }
        return;
      }
      case "trailer": {
        if (line === "") {
          this.state = "done";
          return;
        }
        this.trailerBytes += line.length + 2;
        if (this.trailerBytes > MAX_TRAILER_BYTES) throw malformed("the trailers are too long");
        const colon = line.indexOf(":");
        if (colon <= 0) throw malformed(`'${line.slice(0, 64)}' is not a trailer`);
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === "x-amz-trailer-signature") this.checkTrailerSignature(value);
        else {
          this.trailers.set(name, value);
          this.trailerText += `${name}:${value}\n`;
        }
        return;
      }
      default:
        throw malformed("unexpected data");
    }
  }

  private endChunk() {
    if (!this.signing) return;
    const stringToSign = [
      "AWS4-HMAC-SHA256-PAYLOAD",
      this.signing.amzDate,
      this.signing.scope,
      this.previousSignature,
      EMPTY_SHA256,
      this.chunkHash!.digest("hex"),
    ].join("\n");
    this.previousSignature = this.verify(stringToSign, this.chunkSignature!);
  }

  private checkTrailerSignature(provided: string) {
    if (!this.signing) return;
    const stringToSign = [
      "AWS4-HMAC-SHA256-TRAILER",
      this.signing.amzDate,
      this.signing.scope,
      this.previousSignature,
      createHash("sha256").update(this.trailerText).digest("hex"),
    ].join("\n");
    this.verify(stringToSign, provided);
  }

  private verify(stringToSign: string, provided: string): string {
    const expected = createHmac("sha256", this.signing!.key).update(stringToSign).digest("hex");
    const a = Buffer.from(expected);
    const b = Buffer.from(provided);
    if (a.length !== b.length || !timingSafeEqual(a, b)) throw badChunkSignature();
    return expected;
  }
}
