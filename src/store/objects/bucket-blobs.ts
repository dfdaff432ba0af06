// Blobs as objects in the object store, `objects/<id>`. A write of known length is one PutObject
// streamed as it arrives; one of unknown length (a stored image's archive, an export) goes
// through the SDK's managed upload: one PutObject for a small blob, a multipart upload (parts
// sent a few at a time) for a large one, so memory stays at a few parts whatever the size. The object appears only when the
// upload completes, so a blob is whole or absent; a failed upload is aborted, and an upload a
// crash cut short is aborted by the next start's sweep (clearLeftovers).
import { PassThrough, pipeline, Transform, type Readable } from "node:stream";
import { AbortMultipartUploadCommand, CopyObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { ObjectStoreBucket } from "../bucket/bucket.js";
import { openRandomOver, streamRanges, type BlobAccess } from "./blob-reading.js";
import { BLOB_ID, blobIdTime, newBlobId, type BlobStore } from "./blobs.js";
import { BlobHolds } from "./holds.js";

const FOLDER = "objects/";
/** Multipart part size and parts in flight: 32 MiB of buffers per upload at most. */
const PART_BYTES = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT = 4;
/** The largest object one PutObject may write, and one CopyObject copy; past it, multipart. */
const PUT_OBJECT_LIMIT = 5 * 1024 ** 3;
const COPY_OBJECT_LIMIT = PUT_OBJECT_LIMIT;

export interface BucketBlobOptions {
  /** Smaller only in tests, to take the streamed path with small blobs. */
  copyObjectLimit?: number;
}

export function bucketBlobStore(bucket: ObjectStoreBucket, options: BucketBlobOptions = {}): BlobStore {
  const copyLimit = options.copyObjectLimit ?? COPY_OBJECT_LIMIT;
  const nameOf = (id: string) => {
    if (!BLOB_ID.test(id)) throw new Error(`not a blob id: ${id}`);
    return FOLDER + id;
  };
  const holds = new BlobHolds((id) => bucket.remove(nameOf(id)));
  const missing = (id: string) => new Error(`blob ${id} is not in the object store`);
  const access: BlobAccess = {
    async stream(id, start, end) {
      const body = await bucket.get(nameOf(id), { start, end });
      if (!body) throw missing(id);
      return body;
    },
    async open(id) {
      return {
        async readInto(into, position) {
          if (!(await bucket.readInto(nameOf(id), position, into))) throw missing(id);
        },
        close: async () => {},
      };
    },
  };

  /**
   * A body of known length goes out as one PutObject as it arrives: no part is buffered, so
   * memory does not grow with the uploads under way. (The SDK cannot resend a stream; a store
   * failure fails the request, which the client retries.)
   */
  async function put(source: Readable, length: number): Promise<{ id: string; size: number }> {
    const id = newBlobId();
    // The SDK must never see the body fail: it wraps the body in a stream of its own that nothing
    // listens to for errors, so a failed body would be an uncaught error. A failed source is
    // unpiped instead, and the request aborted.
    const body = new PassThrough({ highWaterMark: 1 << 20 });
    const abort = new AbortController();
    let sourceFailure: Error | undefined;
    source.on("error", (error) => {
      sourceFailure ??= error;
      source.unpipe(body);
      abort.abort(error);
    });
    source.pipe(body);
    const send = () =>
      bucket.client.send(new PutObjectCommand({ Bucket: bucket.name, Key: bucket.key(nameOf(id)), Body: body, ContentLength: length }), {
        abortSignal: abort.signal,
      });
    await settle(id, source, "PutObject", send, () => sourceFailure);
    return { id, size: length };
  }

  /**
   * Sends a write of blob `id` fed from `source`. When the source failed, its failure is what the
   * caller hears (a BadDigest, say), and an object written despite it is removed.
   */
  async function settle(id: string, source: Readable, what: string, send: () => Promise<unknown>, sourceFailure: () => Error | undefined): Promise<void> {
    try {
      await bucket.call(what, send);
    } catch (error) {
      source.destroy();
      throw sourceFailure() ?? error;
    }
    const failed = sourceFailure();
    if (failed) {
      await bucket.remove(nameOf(id)).catch(() => {});
      throw failed;
    }
  }

  /** Streams `source` into a new object; its id and size once the upload completed. */
  async function upload(source: Readable): Promise<{ id: string; size: number }> {
    const id = newBlobId();
    let size = 0;
    const counted = new Transform({
      transform(piece: Buffer, _encoding, done) {
        size += piece.length;
        done(null, piece);
      },
    });
    let sourceFailure: Error | undefined;
    pipeline(source, counted, (error) => {
      if (error) sourceFailure = error;
    });
    const managed = new Upload({
      client: bucket.client,
      params: { Bucket: bucket.name, Key: bucket.key(nameOf(id)), Body: counted },
      partSize: PART_BYTES,
      queueSize: PARTS_IN_FLIGHT,
      leavePartsOnError: false,
    });
    await settle(
      id,
      source,
      "an upload",
      () => managed.done(),
      () => sourceFailure,
    );
    return { id, size };
  }

  /** Multipart uploads under the blob folder begun before `before` (all when it is Infinity). */
  async function* uploadsBegunBefore(before: number): AsyncGenerator<{ Key: string; UploadId: string }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await bucket.call("ListMultipartUploads", () =>
        bucket.client.send(
          new ListMultipartUploadsCommand({ Bucket: bucket.name, Prefix: bucket.key(FOLDER), KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
        ),
      );
      for (const u of page.Uploads ?? []) {
        if (!u.Key || !u.UploadId) continue;
        // The later of the store's date and the one in the blob's id: moto reports a fixed 2010.
        const begun = Math.max(u.Initiated?.getTime() ?? 0, blobIdTime(u.Key.slice(u.Key.lastIndexOf("/") + 1)) ?? 0);
        if (begun < before) yield { Key: u.Key, UploadId: u.UploadId };
      }
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async function abortUploads(before: number): Promise<void> {
    const stale = [];
    for await (const upload of uploadsBegunBefore(before)) stale.push(upload);
    for (const { Key, UploadId } of stale) {
      await bucket.call("AbortMultipartUpload", () => bucket.client.send(new AbortMultipartUploadCommand({ Bucket: bucket.name, Key, UploadId })));
    }
  }

  return {
    write: (source, length) => (length !== undefined && length <= PUT_OBJECT_LIMIT ? put(source, length) : upload(source)),
    read: (ranges) => streamRanges(holds, access, ranges),
    openRandom: (parts) => openRandomOver(holds, access, parts),

    async copy(id) {
      holds.hold(id);
      try {
        const head = await bucket.call("HeadObject", () => bucket.client.send(new HeadObjectCommand({ Bucket: bucket.name, Key: bucket.key(nameOf(id)) })));
        if ((head.ContentLength ?? 0) > copyLimit) {
          const body = await access.stream(id, 0, head.ContentLength!);
          return (await upload(body)).id;
        }
        const copyId = newBlobId();
        await bucket.call("CopyObject", () =>
          bucket.client.send(
            new CopyObjectCommand({
              Bucket: bucket.name,
              Key: bucket.key(nameOf(copyId)),
              CopySource: `${bucket.name}/${encodeURIComponent(bucket.key(nameOf(id)))}`,
            }),
          ),
        );
        return copyId;
      } finally {
        await holds.release(id);
      }
    },

    remove: (id) => holds.remove(id),

    async *ids() {
      for await (const page of bucket.list(FOLDER)) {
        for (const object of page) {
          const id = object.name.slice(FOLDER.length);
          if (BLOB_ID.test(id)) yield { id, modifiedMs: object.modifiedMs };
        }
      }
    },

    clearLeftovers: abortUploads,

    async reset() {
      await abortUploads(Infinity);
      await bucket.removeAll(FOLDER);
    },
  };
}
