// CreateRestoreImageTask's work: a Kiln image archive read front to back from its object, each
// block checked against its hash as it is stored, into the snapshots the request made (pending).
// Only when the whole archive has checked out do the snapshots complete and the image become
// available; a bad archive fails the image with a StateReason and its snapshots are deleted.
import { ArchiveError, readArchive, type ArchiveManifest } from "../formats/image-archive.js";
import type { ChunkStore } from "../store/blocks/chunks.js";
import { atomically, type MetaDb } from "../store/meta/database.js";
import { completeImage, failImage } from "../store/meta/images.js";
import { blobsOf, getObject } from "../store/meta/objects.js";
import type { BlockRow } from "../store/meta/manifests.js";
import { completeSnapshots, deleteSnapshot, dropBlocks, putBlocks } from "../store/meta/snapshots.js";
import type { TaskRow } from "../store/meta/tasks.js";
import { wholeRanges, type BlobStore } from "../store/objects/blobs.js";
import { TaskFailure, type TaskIo, type TaskKind } from "./runner.js";

export const RESTORE_TASK = "restore-image";

export interface RestoreParams {
  imageId: string;
  bucket: string;
  key: string;
  /** The new snapshots, in the archive's snapshot order. */
  snapshotIds: string[];
}

const BATCH = 256;
export const INVALID_ARCHIVE = "Client.InvalidImageArchive";

export function restoreImageKind(deps: { db: MetaDb; chunks: ChunkStore; blobs: BlobStore }): TaskKind {
  const { db, chunks, blobs } = deps;
  const paramsOf = (task: TaskRow) => JSON.parse(task.params) as RestoreParams;
  const where = (params: RestoreParams) => `s3://${params.bucket}/${params.key}`;

  return {
    async run(task: TaskRow, io: TaskIo) {
      const params = paramsOf(task);
      const object = await getObject(db, params.bucket, params.key);
      if (!object) throw new TaskFailure(`The object ${where(params)} no longer exists.`, "Client.NoSuchKey");
      const source = blobs.read(wholeRanges(blobsOf(object)));
      // Progress is counted as the reader pulls, so the stream keeps its backpressure.
      async function* counted() {
        let read = 0;
        for await (const chunk of source) {
          read += (chunk as Buffer).length;
          io.progress((read / Math.max(1, object!.size)) * 100);
          yield chunk as Buffer;
        }
      }
      let pending: { snapshot: number; rows: BlockRow[] } = { snapshot: 0, rows: [] };
      const flush = async () => {
        await putBlocks(db, params.snapshotIds[pending.snapshot]!, pending.rows);
        pending.rows = [];
      };
      try {
        for await (const item of readArchive(counted())) {
          if (io.signal.aborted) return;
          if ("format" in item) {
            checkSameShape(item, params);
            continue;
          }
          const chunk = await chunks.put(item.data);
          if (chunk !== item.sha256) throw new ArchiveError(`block ${item.block} of snapshot ${item.snapshot} does not match its hash`);
          if (item.snapshot !== pending.snapshot) {
            await flush();
            pending = { snapshot: item.snapshot, rows: [] };
          }
          pending.rows.push({ block_index: item.block, chunk });
          if (pending.rows.length >= BATCH) await flush();
        }
        await flush();
      } catch (error) {
        if (error instanceof ArchiveError) throw new TaskFailure(`The object ${where(params)} cannot be restored: ${error.message}.`, INVALID_ARCHIVE);
        throw error;
      } finally {
        source.destroy();
      }
      if (io.signal.aborted) return;
      const now = new Date().toISOString();
      await atomically(db, async (tx) => {
        await io.fence(tx);
        await completeSnapshots(tx, params.snapshotIds);
        await completeImage(tx, params.imageId, now);
      });
    },

    async undo(task: TaskRow) {
      // A run begins on empty snapshots: whatever an interrupted or failed one wrote goes.
      const params = paramsOf(task);
      await dropBlocks(db, params.snapshotIds);
    },

    async failed(task: TaskRow, failure: TaskFailure) {
      const params = paramsOf(task);
      const scope = { accountId: task.account_id, region: task.region };
      for (const snapshotId of params.snapshotIds) await deleteSnapshot(db, scope, snapshotId);
      await failImage(db, params.imageId, failure);
    },
  };
}

/** The archive read now must be the one whose manifest the request read. */
function checkSameShape(manifest: ArchiveManifest, params: RestoreParams) {
  if (manifest.snapshots.length !== params.snapshotIds.length) {
    throw new ArchiveError("the object changed since the restore began: it holds a different number of snapshots");
  }
}
