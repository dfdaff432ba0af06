// ImportImage's and ImportSnapshot's work: each disk file is opened by its format's reader,
// streamed into a snapshot's blocks, and (for an image) the boot disk inspected for its
// operating system. The snapshots and the AMI become visible together, in the transaction that
// completes the task; a failed or cancelled task leaves nothing but its own `deleted` record.
import { newId } from "../domain/ids.js";
import { DiskImageError } from "../formats/disk/errors.js";
import { openDisks, type ImportFormat } from "../formats/disk/open.js";
import type { ByteSource } from "../formats/disk/source.js";
import { explainUnknownOs, inspectDisk, type Distribution } from "../inspect/operating-system.js";
import { snapshotSource } from "../store/blocks/snapshot-source.js";
import { writeDiskToSnapshot } from "../store/blocks/disk-writer.js";
import type { ChunkStore } from "../store/blocks/chunks.js";
import { conversionProgress, getConversionTask, updateConversionTask, type ConversionTaskRow } from "../store/meta/conversion-tasks.js";
import { atomically, type MetaDb } from "../store/meta/database.js";
import { insertImage, newBlockDeviceRow, newImageRow } from "../store/meta/images.js";
import { dropBlocks, insertSnapshot, newSnapshotRow } from "../store/meta/snapshots.js";
import { blobsOf, getObject } from "../store/meta/objects.js";
import type { TaskRow } from "../store/meta/tasks.js";
import type { BlobStore, RandomReader } from "../store/objects/blobs.js";
import { TaskCancelled, TaskFailure, type TaskIo, type TaskKind } from "./runner.js";

export const IMPORT_IMAGE_TASK = "import-image";
export const IMPORT_SNAPSHOT_TASK = "import-snapshot";

const GIB = 1024 ** 3;
export const UNKNOWN_OS = "ClientError: Unknown OS / Missing OS files.";

/** One DiskContainer as the request gave it. */
export interface DiskSource {
  bucket: string;
  key: string;
  /** The request's Url, echoed in SnapshotDetails. */
  url?: string;
  format?: ImportFormat;
  deviceName?: string;
  description?: string;
}

/** One disk the task found (an OVA gives several for its one container). */
export interface ImportedDisk {
  container: number;
  snapshotId: string;
  format: string;
  diskImageSize: number;
  virtualSize: number;
  deviceName?: string;
}

export interface ImportDetails {
  request: {
    description?: string;
    architecture?: string;
    platform?: string;
    bootMode?: string;
    hypervisor?: string;
    licenseType?: string;
    encrypted: boolean;
    kmsKeyId?: string;
    roleName?: string;
    usageOperation?: string;
    licenseConfigurationArns: string[];
    comment?: string;
  };
  sources: DiskSource[];
  /** Filled as the disks are opened (their snapshot ids before any block is written). */
  disks: ImportedDisk[];
  result?: {
    imageId?: string;
    platform?: string;
    architecture?: string;
    bootMode?: string;
    licenseType?: string;
    distribution?: Distribution;
  };
}

export const detailsOf = (row: ConversionTaskRow) => JSON.parse(row.details) as ImportDetails;

/** The message a failed task ends with, in AWS's words where AWS has them. */
function failureMessage(error: unknown): TaskFailure | undefined {
  if (error instanceof TaskFailure) return error;
  if (error instanceof DiskImageError) return new TaskFailure(`ClientError: Disk validation failed [${error.message}]`, "Client.DiskValidation");
  return undefined;
}

export function importKinds(deps: { db: MetaDb; chunks: ChunkStore; blobs: BlobStore }): Record<string, TaskKind> {
  const { db, chunks, blobs } = deps;

  async function current(taskId: string): Promise<ConversionTaskRow> {
    const row = await getConversionTask(db, taskId);
    if (!row) throw new TaskFailure(`The import task ${taskId} no longer exists.`, "Server.InternalError");
    return row;
  }

  /** The file a container names, opened for random access; refused when it is gone. */
  async function openSource(source: DiskSource, readers: RandomReader[]): Promise<RandomReader> {
    const object = await getObject(db, source.bucket, source.key);
    if (!object) throw new TaskFailure(`ClientError: The object s3://${source.bucket}/${source.key} does not exist.`, "Client.NoSuchKey");
    const reader = await blobs.openRandom(blobsOf(object));
    readers.push(reader);
    return reader;
  }

  /** Files a VMDK descriptor names (plain names: the reader refuses others) live beside it, in the same bucket and folder. */
  const companionOf =
    (source: DiskSource, readers: RandomReader[]) =>
    async (name: string): Promise<ByteSource> => {
      const folder = source.key.includes("/") ? source.key.slice(0, source.key.lastIndexOf("/") + 1) : "";
      try {
        return await openSource({ ...source, key: folder + name }, readers);
      } catch (error) {
        if (error instanceof TaskFailure) throw new DiskImageError(`the extent file ${name} is not in s3://${source.bucket}/${folder}`);
        throw error;
      }
    };

  /**
   * Opens every container's disks and streams them into their snapshots' blocks. Snapshot ids
   * are recorded before the first block is written, so an interrupted run can be undone.
   */
  async function convert(task: TaskRow, io: TaskIo, row: ConversionTaskRow, span: { from: number; to: number }, single: boolean) {
    const details = detailsOf(row);
    const report = conversionProgress(db, task.task_id);
    const readers: RandomReader[] = [];
    try {
      await report("validating", Math.max(span.from - 5, 2), true);
      const opened = [];
      for (const [container, source] of details.sources.entries()) {
        const file = await openSource(source, readers);
        const disks = await openDisks(file, source.format, companionOf(source, readers));
        for (const disk of disks) opened.push({ container, disk, fileSize: disk.name ? undefined : file.size });
      }
      if (single && opened.length !== 1) throw new DiskImageError(`the file holds ${opened.length} disks; ImportSnapshot takes one`);
      details.disks = opened.map(({ container, disk, fileSize }, i) => ({
        container,
        snapshotId: details.disks[i]?.snapshotId ?? newSnapshotId(),
        format: disk.format.toUpperCase(),
        diskImageSize: fileSize ?? disk.image.virtualSize,
        virtualSize: disk.image.virtualSize,
        deviceName: details.sources[container]!.deviceName,
      }));
      await updateConversionTask(db, task.task_id, { details: JSON.stringify(details), status_message: "validated" }, "active");
      const total = opened.reduce((sum, o) => sum + o.disk.image.virtualSize, 0);
      let before = 0;
      for (const [i, { disk }] of opened.entries()) {
        await writeDiskToSnapshot({ db, chunks }, disk.image.extents(io.signal), details.disks[i]!.snapshotId, {
          signal: io.signal,
          onProgress: (offset) => {
            const fraction = (before + offset) / Math.max(1, total);
            void report("converting", span.from + fraction * (span.to - span.from));
          },
        });
        before += disk.image.virtualSize;
      }
      return details;
    } finally {
      await Promise.all(readers.map((r) => r.close()));
    }
  }

  const undo = async (task: TaskRow) => {
    const row = await getConversionTask(db, task.task_id);
    if (!row || row.status === "completed") return;
    const ids = detailsOf(row).disks.map((d) => d.snapshotId);
    await dropBlocks(db, ids);
  };

  const failed = async (task: TaskRow, failure: TaskFailure) => {
    await updateConversionTask(db, task.task_id, { status: "deleted", status_message: failure.message, progress: null });
  };

  /** Cancelled before this run began (a stop came between the request and the run)? */
  function checkNotCancelled(row: ConversionTaskRow) {
    if (row.status === "deleting") throw new TaskCancelled(row.status_message ?? "Task cancelled.");
  }

  const snapshotRow = (task: TaskRow, details: ImportDetails, disk: ImportedDisk, now: string) =>
    newSnapshotRow({
      account_id: task.account_id,
      region: task.region,
      snapshot_id: disk.snapshotId,
      volume_size: Math.max(1, Math.ceil(disk.virtualSize / GIB)),
      start_time: now,
      description:
        details.sources[disk.container]!.description ?? `Created by ${task.kind === IMPORT_IMAGE_TASK ? "ImportImage" : "ImportSnapshot"} for ${task.task_id}`,
      encrypted: details.request.encrypted ? 1 : 0,
      kms_key_id: details.request.encrypted ? (details.request.kmsKeyId ?? "alias/aws/ebs") : null,
    });

  /**
   * Marks the task completed, in the transaction that makes its output visible; a task cancelled
   * meanwhile (no longer active) is not completed, and its output is not made.
   */
  async function completeTask(tx: MetaDb, task: TaskRow, details: ImportDetails, statusMessage: string | null) {
    const change = { status: "completed" as const, status_message: statusMessage, progress: null, details: JSON.stringify(details) };
    if (!(await updateConversionTask(tx, task.task_id, change, "active"))) throw new TaskCancelled("Task cancelled.");
  }

  const importImage: TaskKind = {
    async run(task, io) {
      try {
        const row = await current(task.task_id);
        if (row.status === "completed") return;
        checkNotCancelled(row);
        const details = await convert(task, io, row, { from: 28, to: 56 }, false);
        if (io.signal.aborted) return;
        const report = conversionProgress(db, task.task_id);
        await report("updating", 58, true);
        const boot = details.disks[0]!;
        const found = await inspectDisk(snapshotSource({ db, chunks }, boot.snapshotId, boot.virtualSize));
        // AWS's text first (scripts match it), then what Kiln read and looked for.
        if (!found.platform || !found.architecture) throw new TaskFailure(`${UNKNOWN_OS} ${explainUnknownOs(found)}`, "Client.UnknownOS");
        await report("booting", 66, true);
        await report("booted", 72, true);
        await report("preparing ami", 80, true);
        const platform = found.platform;
        const licenseType = details.request.licenseType ?? (platform === "Windows" ? "AWS" : "BYOL");
        const imageId = newImageId();
        details.result = {
          imageId,
          platform,
          architecture: found.architecture,
          bootMode: details.request.bootMode ?? found.bootMode,
          licenseType,
          distribution: found.distribution,
        };
        const now = new Date().toISOString();
        const image = newImageRow({
          account_id: task.account_id,
          region: task.region,
          image_id: imageId,
          name: task.task_id,
          // As VM import names what it found: "Linux - Debian GNU/Linux 12 (bookworm)".
          description: details.request.description ?? [platform, found.distribution?.prettyName ?? found.distribution?.name].filter(Boolean).join(" - "),
          architecture: found.architecture,
          root_device_name: "/dev/sda1",
          ena_support: 1,
          sriov_net_support: "simple",
          boot_mode: details.result.bootMode ?? null,
          platform: platform === "Windows" ? "windows" : null,
          creation_date: now,
        });
        const devices = details.disks.map((disk, position) =>
          newBlockDeviceRow({
            device_name: position === 0 ? "/dev/sda1" : (disk.deviceName ?? `/dev/sd${String.fromCharCode(98 + position - 1)}`),
            snapshot_id: disk.snapshotId,
            volume_size: Math.max(1, Math.ceil(disk.virtualSize / GIB)),
            volume_type: "gp2",
            delete_on_termination: 1,
            encrypted: details.request.encrypted ? 1 : 0,
          }),
        );
        await atomically(db, async (tx) => {
          await io.fence(tx);
          await completeTask(tx, task, details, null);
          for (const disk of details.disks) await insertSnapshot(tx, snapshotRow(task, details, disk, now));
          await insertImage(tx, { image, devices });
        });
      } catch (error) {
        throw failureMessage(error) ?? error;
      }
    },
    undo,
    failed,
  };

  const importSnapshot: TaskKind = {
    async run(task, io) {
      try {
        const row = await current(task.task_id);
        if (row.status === "completed") return;
        checkNotCancelled(row);
        const details = await convert(task, io, row, { from: 10, to: 95 }, true);
        if (io.signal.aborted) return;
        const now = new Date().toISOString();
        await atomically(db, async (tx) => {
          await io.fence(tx);
          await completeTask(tx, task, details, "completed");
          await insertSnapshot(tx, snapshotRow(task, details, details.disks[0]!, now));
        });
      } catch (error) {
        throw failureMessage(error) ?? error;
      }
    },
    undo,
    failed,
  };

  return { [IMPORT_IMAGE_TASK]: importImage, [IMPORT_SNAPSHOT_TASK]: importSnapshot };
}

const newSnapshotId = () => newId("snap");
const newImageId = () => newId("ami");
