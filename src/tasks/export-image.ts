// ExportImage's work: the AMI's root volume, read block by block from its snapshot's manifest,
// written as a VMDK (streamOptimized), VHD (dynamic) or RAW file straight into one bucket object.
// The object appears only once the whole file is written; a failed export leaves none.
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import { EXPORT_BLOCK, type DiskBlocks, type DiskWriter } from "../formats/export/writer.js";
import { writeRaw } from "../formats/export/raw.js";
import { writeVhd } from "../formats/export/vhd.js";
import { writeStreamOptimizedVmdk } from "../formats/export/vmdk.js";
import { nonZeroBlockRows, nonZeroBlocks } from "../store/blocks/snapshot-source.js";
import type { ChunkStore } from "../store/blocks/chunks.js";
import { conversionProgress, getConversionTask, updateConversionTask, type ConversionTaskRow } from "../store/meta/conversion-tasks.js";
import type { MetaDb } from "../store/meta/database.js";
import { countResolvedBlocks } from "../store/meta/manifests.js";
import type { TaskRow } from "../store/meta/tasks.js";
import type { BlobStore } from "../store/objects/blobs.js";
import { TaskCancelled, type TaskKind } from "./runner.js";
import { commitTaskOutput } from "./task-object.js";

export const EXPORT_IMAGE_TASK = "export-image";

export type ExportFormat = "VMDK" | "VHD" | "RAW";

export const EXPORT_WRITERS: Record<ExportFormat, { writer: DiskWriter; extension: string; contentType: string }> = {
  VMDK: { writer: writeStreamOptimizedVmdk, extension: "vmdk", contentType: "application/x-vmdk" },
  VHD: { writer: writeVhd, extension: "vhd", contentType: "application/x-vhd" },
  RAW: { writer: writeRaw, extension: "raw", contentType: "application/octet-stream" },
};

export interface ExportDetails {
  imageId: string;
  snapshotId: string;
  /** Bytes of the exported disk: the root volume's size. */
  diskBytes: number;
  format: ExportFormat;
  bucket: string;
  prefix: string;
  key: string;
  description?: string;
  roleName?: string;
}

export const exportDetailsOf = (row: ConversionTaskRow) => JSON.parse(row.details) as ExportDetails;

export function exportImageKind(deps: { db: MetaDb; chunks: ChunkStore; blobs: BlobStore }): TaskKind {
  const { db, chunks, blobs } = deps;
  return {
    async run(task: TaskRow, io) {
      const row = await getConversionTask(db, task.task_id);
      if (!row || row.status === "completed") return;
      if (row.status === "deleting") throw new TaskCancelled(row.status_message ?? "Task cancelled.");
      const details = exportDetailsOf(row);
      const total = await countResolvedBlocks(db, details.snapshotId);
      let done = 0;
      const report = conversionProgress(db, task.task_id);
      const disk: DiskBlocks = {
        virtualSize: details.diskBytes,
        allocated: async function* () {
          for await (const r of nonZeroBlockRows(db, details.snapshotId)) yield r.block_index;
        },
        blocks: async function* (signal?: AbortSignal) {
          for await (const block of nonZeroBlocks({ db, chunks }, details.snapshotId, signal)) {
            const length = Math.min(EXPORT_BLOCK, details.diskBytes - block.index * EXPORT_BLOCK);
            if (length <= 0) return;
            yield { index: block.index, data: length < EXPORT_BLOCK ? block.data.subarray(0, length) : block.data };
            void report("converting", (++done / Math.max(1, total)) * 100);
          }
        },
      };
      const { writer, contentType } = EXPORT_WRITERS[details.format];
      // S3's ETag of a single-part object is the MD5 of its bytes; computed as they stream.
      const md5 = createHash("md5");
      async function* hashed() {
        for await (const piece of writer(disk, io.signal)) {
          md5.update(piece);
          yield piece;
        }
      }
      const blob = await blobs.write(Readable.from(hashed()));
      const object = {
        bucket: details.bucket,
        key: details.key,
        etag: `"${md5.digest("hex")}"`,
        content_type: contentType,
        metadata: JSON.stringify({ "export-image-task": task.task_id, "source-ami": details.imageId }),
        tags: "[]",
        last_modified: new Date().toISOString(),
      };
      if (!(await commitTaskOutput({ db, blobs }, task, io.signal, blob, object, `ClientError: The bucket ${details.bucket} no longer exists.`))) return;
      await updateConversionTask(db, task.task_id, { status: "completed", status_message: null, progress: null });
    },
    async failed(task, failure) {
      await updateConversionTask(db, task.task_id, { status: "deleted", status_message: failure.message, progress: null });
    },
  };
}
