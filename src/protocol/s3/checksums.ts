// The integrity checks S3 clients attach to a body: Content-MD5, and the flexible checksums
// (x-amz-checksum-<algorithm>, as a header or an aws-chunked trailer). Each is computed while the
// body streams past and compared when it ends.
import { createHash, type Hash } from "node:crypto";
import { crc32 } from "node:zlib";
import { Crc32c, Crc64Nvme } from "@aws-sdk/checksums/crc";
import { ApiError } from "../errors.js";

export const CHECKSUM_ALGORITHMS = ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"] as const;
export type ChecksumAlgorithm = (typeof CHECKSUM_ALGORITHMS)[number];

/** The header (or trailer) that carries an algorithm's checksum: x-amz-checksum-crc32, … */
export const checksumHeader = (algorithm: ChecksumAlgorithm) => `x-amz-checksum-${algorithm.toLowerCase()}`;

export function checksumAlgorithm(name: string | undefined): ChecksumAlgorithm | undefined {
  if (name === undefined || name === "") return undefined;
  const upper = name.toUpperCase();
  if (!(CHECKSUM_ALGORITHMS as readonly string[]).includes(upper)) {
    throw new ApiError("InvalidRequest", `Checksum algorithm ${name} is not supported; use one of ${CHECKSUM_ALGORITHMS.join(", ")}.`);
  }
  return upper as ChecksumAlgorithm;
}

/** A running checksum; `digest` gives the raw bytes. */
export interface RunningChecksum {
  update(data: Buffer): void;
  digest(): Promise<Buffer>;
}

class Crc32Checksum implements RunningChecksum {
  private value = 0;
  update(data: Buffer) {
    this.value = crc32(data, this.value);
  }
  async digest() {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(this.value >>> 0);
    return out;
  }
}

class NodeHashChecksum implements RunningChecksum {
  private readonly hash: Hash;
  constructor(algorithm: string) {
    this.hash = createHash(algorithm);
  }
  update(data: Buffer) {
    this.hash.update(data);
  }
  async digest() {
    return this.hash.digest();
  }
}

class SdkChecksum implements RunningChecksum {
  constructor(private readonly checksum: { update(data: Uint8Array): void; digest(): Promise<Uint8Array> }) {}
  update(data: Buffer) {
    this.checksum.update(data);
  }
  async digest() {
    return Buffer.from(await this.checksum.digest());
  }
}

export function runningChecksum(algorithm: ChecksumAlgorithm | "MD5"): RunningChecksum {
  switch (algorithm) {
    case "CRC32":
      return new Crc32Checksum();
    case "CRC32C":
      return new SdkChecksum(new Crc32c());
    case "CRC64NVME":
      return new SdkChecksum(new Crc64Nvme());
    case "SHA1":
      return new NodeHashChecksum("sha1");
    case "SHA256":
      return new NodeHashChecksum("sha256");
    case "MD5":
      return new NodeHashChecksum("md5");
  }
}

/** S3's multipart ("composite") checksum: the checksum of the parts' checksums, then -N. */
export async function compositeChecksum(algorithm: ChecksumAlgorithm, partChecksums: readonly string[]): Promise<string> {
  const checksum = runningChecksum(algorithm);
  for (const part of partChecksums) checksum.update(Buffer.from(part, "base64"));
  return `${(await checksum.digest()).toString("base64")}-${partChecksums.length}`;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** A checksum the client declared, checked for form: base64 of the algorithm's digest length. */
export function declaredChecksum(algorithm: ChecksumAlgorithm, value: string): string {
  const length = { CRC32: 4, CRC32C: 4, CRC64NVME: 8, SHA1: 20, SHA256: 32 }[algorithm];
  if (!BASE64.test(value) || Buffer.from(value, "base64").length !== length) {
    throw new ApiError("InvalidRequest", `Value for ${checksumHeader(algorithm)} header is invalid.`);
  }
  return value;
}

export const badDigest = (algorithm: ChecksumAlgorithm) => new ApiError("BadDigest", `The ${algorithm} you specified did not match the calculated checksum.`);

/** Content-MD5's value, checked for form (base64 of 16 bytes). */
export function declaredMd5(value: string): string {
  if (!BASE64.test(value) || Buffer.from(value, "base64").length !== 16) {
    throw new ApiError("InvalidDigest", "The Content-MD5 you specified is not valid.");
  }
  return value;
}
