// What a Kiln keeps in its data home, counted from outside Kiln's own store code: files in the data
// folder, or objects (and unfinished multipart uploads) in the object store bucket, listed with a
// plain S3 client. Tests use it to show that failed, cut-off or cancelled work leaves nothing
// behind once collection has run.
import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import type { TestKiln } from "./kiln.js";

export interface Collected {
  kept: number;
  removed: number;
  packsRemoved: number;
  packsCompacted: number;
}

/** Runs the admin collection with no grace period; fails the test unless it answers 200. */
export async function collectNow(kiln: TestKiln): Promise<Collected> {
  const response = await kiln.admin("/_kiln/collect", { query: { graceMs: "0" } });
  assert.equal(response.status, 200, `collect answered ${response.status}: ${response.text}`);
  return JSON.parse(response.text) as Collected;
}

/** Every file under `dir`, relative to it; throws (ENOENT) when `dir` does not exist. */
function filesUnder(dir: string, root = dir): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path, root));
    else out.push(relative(root, path));
  }
  return out;
}

/** Keys (without Kiln's prefix) of the objects under `under` in the Kiln's bucket, and its unfinished multipart uploads there. */
async function bucketListing(kiln: TestKiln, under: string): Promise<string[]> {
  const settings = kiln.kiln.config.objectStore!;
  const client = new S3Client({
    region: settings.region,
    endpoint: settings.endpoint,
    forcePathStyle: settings.forcePathStyle,
    credentials: settings.credentials,
    maxAttempts: 1,
  });
  const prefix = settings.prefix + under;
  const out: string[] = [];
  try {
    let ContinuationToken: string | undefined;
    do {
      // A missing bucket is an error here (NoSuchBucket), never an empty count.
      const page = await client.send(new ListObjectsV2Command({ Bucket: settings.bucket, Prefix: prefix, ContinuationToken }));
      for (const object of page.Contents ?? []) out.push(object.Key!.slice(settings.prefix.length));
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (ContinuationToken);
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    do {
      const page = await client.send(new ListMultipartUploadsCommand({ Bucket: settings.bucket, Prefix: prefix, KeyMarker, UploadIdMarker }));
      for (const upload of page.Uploads ?? []) out.push(`${upload.Key!.slice(settings.prefix.length)} (unfinished upload ${upload.UploadId})`);
      [KeyMarker, UploadIdMarker] = page.IsTruncated ? [page.NextKeyMarker, page.NextUploadIdMarker] : [undefined, undefined];
    } while (KeyMarker);
  } finally {
    client.destroy();
  }
  return out.sort();
}

/**
 * The blobs (bucket objects' bodies, stored images, uploads' parts, and leftovers of interrupted
 * writes) a Kiln keeps: the files under `<dataDir>/objects`, or the objects and unfinished uploads
 * under `objects/` in its bucket. Throws when the place does not exist: a test takes it only once
 * something has been stored, so a wrong path can never read as "nothing stored".
 */
export async function storedBlobs(kiln: TestKiln): Promise<string[]> {
  if (kiln.kiln.config.objectStore) return bucketListing(kiln, "objects/");
  return filesUnder(join(kiln.dataDir, "objects")).sort();
}

/** The chunk objects in a Kiln's bucket, or its pack files (their names) in the data folder. */
export async function storedChunkFiles(kiln: TestKiln): Promise<string[]> {
  if (kiln.kiln.config.objectStore) return bucketListing(kiln, "chunks/");
  return filesUnder(join(kiln.dataDir, "packs")).sort();
}

export interface StorageState {
  /** Chunks the catalogue still names after collection (collect's `kept`). */
  keptChunks: number;
  /** Chunk objects in the bucket (one per chunk), or undefined in the data folder, whose packs keep dead slots until closed. */
  chunkObjects?: string[];
  blobs: string[];
}

/**
 * Collects (grace 0), then reads what storage holds. Two readings around some work that should
 * have left nothing behind must be deep-equal.
 */
export async function storageAfterCollect(kiln: TestKiln): Promise<StorageState> {
  const { kept } = await collectNow(kiln);
  return {
    keptChunks: kept,
    chunkObjects: kiln.kiln.config.objectStore ? await storedChunkFiles(kiln) : undefined,
    blobs: await storedBlobs(kiln),
  };
}

/**
 * Collects until storage reads as `before`, for at most `timeoutMs`, then asserts it does. Work
 * that failed or was cancelled may still have writes in flight when it reports its end (a
 * cut-off request still cleaning up, an import's block puts finishing after its task ended);
 * what they leave must be gone once they settle, and stay gone.
 */
export async function assertStorageBackTo(kiln: TestKiln, before: StorageState, message: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let now = await storageAfterCollect(kiln);
  while (!isDeepStrictEqual(now, before) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200));
    now = await storageAfterCollect(kiln);
  }
  assert.deepEqual(now, before, message);
}
