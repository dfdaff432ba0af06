// The object store as Kiln's data home: one bucket (under an optional key prefix) of any
// S3-compatible service (AWS S3, MinIO, Ceph RGW, another Kiln), reached through the AWS SDK's
// S3 client, which brings signing, retries with backoff, checksums and multipart uploads.
// Failures of the service itself (unreachable, 5xx after the retries) become
// StoreUnavailableError, which clients see as ServiceUnavailable.
import type { Readable } from "node:stream";
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  paginateListObjectsV2,
  S3Client,
  type S3ServiceException,
} from "@aws-sdk/client-s3";
import { NET_UNAVAILABLE, StoreUnavailableError } from "../unavailable.js";

export interface ObjectStoreSettings {
  bucket: string;
  /** Prepended to every key Kiln writes ("kiln/" keeps Kiln's keys apart in a shared bucket). */
  prefix: string;
  /** The service's URL; the AWS S3 endpoint of `region` when absent. */
  endpoint?: string;
  region: string;
  /** Keys to sign with; the SDK's default chain (AWS_* variables, profiles, roles) when absent. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** bucket in the path rather than the host name, as most services other than AWS want. */
  forcePathStyle: boolean;
}

export interface StoredObject {
  /** The key without the prefix. */
  name: string;
  size: number;
  modifiedMs: number;
}

/** Keys one DeleteObjects request may name. */
const DELETE_BATCH = 1000;

const isMissing = (error: unknown) => {
  const name = (error as { name?: string }).name;
  return name === "NoSuchKey" || name === "NotFound";
};

/** True when the service, not the request, failed: unreachable, timing out, or answering 5xx. */
function isServiceFailure(error: unknown): boolean {
  const { code, name, $metadata } = error as { code?: string; name?: string; $metadata?: { httpStatusCode?: number } } & Partial<S3ServiceException>;
  if (code && NET_UNAVAILABLE.has(code)) return true;
  if (name === "TimeoutError" || name === "RequestTimeout" || name === "SlowDown") return true;
  return ($metadata?.httpStatusCode ?? 0) >= 500;
}

export class ObjectStoreBucket {
  readonly client: S3Client;
  readonly name: string;
  private readonly prefix: string;

  constructor(readonly settings: ObjectStoreSettings) {
    this.name = settings.bucket;
    this.prefix = settings.prefix;
    this.client = new S3Client({
      region: settings.region,
      endpoint: settings.endpoint,
      forcePathStyle: settings.forcePathStyle,
      credentials: settings.credentials,
      // Standard retries, a few more than the SDK's three: a brief outage of the store should
      // cost a request some latency, not an error.
      maxAttempts: 5,
      // No checksum the request does not require: with one, the SDK sends every streamed body
      // aws-chunked with a trailer, which not every S3-compatible store reads (and some read it
      // slowly: moto's decoder copies the body once per chunk).
      requestChecksumCalculation: "WHEN_REQUIRED",
    });
  }

  /** The full key of a name Kiln gives an object. */
  key(name: string): string {
    return this.prefix + name;
  }

  /** Runs `work` against the service; its own failures surface as StoreUnavailableError. */
  async call<T>(what: string, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof StoreUnavailableError || !isServiceFailure(error)) throw error;
      throw new StoreUnavailableError(`the object store (bucket ${this.name}) did not answer ${what}: ${(error as Error).message}`, { cause: error });
    }
  }

  /** Resolves when the bucket answers; throws why not. */
  async ping(): Promise<void> {
    await this.call("HeadBucket", () => this.client.send(new HeadBucketCommand({ Bucket: this.name })));
  }

  /** The object's bytes from `start` to before `end` (the whole object when no range is given); undefined when it does not exist. */
  async get(name: string, range?: { start: number; end: number }): Promise<Readable | undefined> {
    try {
      const answer = await this.call("GetObject", () =>
        this.client.send(new GetObjectCommand({ Bucket: this.name, Key: this.key(name), Range: range ? `bytes=${range.start}-${range.end - 1}` : undefined })),
      );
      return answer.Body as Readable;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /** Exactly `into.length` bytes of the object from `start`; false when the object does not exist. */
  async readInto(name: string, start: number, into: Buffer): Promise<boolean> {
    if (into.length === 0) return true;
    const body = await this.get(name, { start, end: start + into.length });
    if (!body) return false;
    // A connection lost part-way through the body is the store's failure too.
    await this.call("GetObject", async () => {
      let filled = 0;
      for await (const piece of body as AsyncIterable<Buffer>) {
        if (filled + piece.length > into.length) {
          body.destroy();
          throw new Error(`object ${name} answered more bytes than asked for at ${start}`);
        }
        piece.copy(into, filled);
        filled += piece.length;
      }
      if (filled !== into.length) throw new Error(`object ${name} is shorter than expected: ${filled} of ${into.length} bytes at ${start}`);
    });
    return true;
  }

  async remove(name: string): Promise<void> {
    await this.call("DeleteObject", () => this.client.send(new DeleteObjectCommand({ Bucket: this.name, Key: this.key(name) })));
  }

  /** Removes the named objects, a thousand to a request; absent ones are no error. */
  async removeMany(names: readonly string[]): Promise<void> {
    for (let i = 0; i < names.length; i += DELETE_BATCH) {
      const batch = names.slice(i, i + DELETE_BATCH);
      const answer = await this.call("DeleteObjects", () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.name, Delete: { Objects: batch.map((name) => ({ Key: this.key(name) })), Quiet: true } })),
      );
      const failed = (answer.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
      if (failed.length > 0)
        throw new Error(
          `the object store kept ${failed.length} objects asked to go (first: ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ""})`,
        );
    }
  }

  /** Every object whose name starts with `under`, a page at a time. */
  async *list(under: string): AsyncGenerator<StoredObject[]> {
    const pages = paginateListObjectsV2({ client: this.client, pageSize: 1000 }, { Bucket: this.name, Prefix: this.key(under) });
    for (;;) {
      const page = await this.call("ListObjectsV2", () => pages.next());
      if (page.done) return;
      yield (page.value.Contents ?? []).map((o) => ({ name: o.Key!.slice(this.prefix.length), size: o.Size ?? 0, modifiedMs: o.LastModified?.getTime() ?? 0 }));
    }
  }

  /** Removes every object whose name starts with `under`. */
  async removeAll(under: string): Promise<void> {
    for await (const page of this.list(under)) await this.removeMany(page.map((o) => o.name));
  }
}
