// Where a task's output file (a stored AMI, an exported disk) becomes a bucket object: only if
// the task was not stopped meanwhile and its account still owns the bucket; otherwise the blob
// it wrote goes, so no half-made or orphaned file stays.
import { getBucket } from "../store/meta/buckets.js";
import type { MetaDb } from "../store/meta/database.js";
import type { ObjectRow } from "../store/meta/objects.js";
import type { TaskRow } from "../store/meta/tasks.js";
import type { BlobStore } from "../store/objects/blobs.js";
import { commitObject } from "../store/objects/commit.js";
import { TaskFailure } from "./runner.js";

/** Commits `blob` as the object `row` describes; false (and the blob removed) when the task was stopped. */
export async function commitTaskOutput(
  deps: { db: MetaDb; blobs: BlobStore },
  task: TaskRow,
  signal: AbortSignal,
  blob: { id: string; size: number },
  row: Omit<ObjectRow, "size" | "blobs" | "headers" | "checksum_algorithm" | "checksum_value" | "checksum_type" | "part_sizes">,
  bucketGone: string,
): Promise<boolean> {
  const { db, blobs } = deps;
  if (signal.aborted) {
    await blobs.remove(blob.id);
    return false;
  }
  const bucket = await getBucket(db, row.bucket);
  if (!bucket || bucket.account_id !== task.account_id) {
    await blobs.remove(blob.id);
    throw new TaskFailure(bucketGone, "Client.NoSuchBucket");
  }
  await commitObject(db, blobs, {
    ...row,
    size: blob.size,
    blobs: JSON.stringify([blob]),
    headers: "{}",
    checksum_algorithm: null,
    checksum_value: null,
    checksum_type: null,
    part_sizes: null,
  });
  return true;
}
