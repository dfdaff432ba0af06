// CreateStoreImageTask, DescribeStoreImageTasks and CreateRestoreImageTask: an AMI to one S3
// object (a Kiln image archive, docs/image-archive.md) and back, as durable tasks
// (tasks/store-image.ts, tasks/restore-image.ts). The requests check what they can at once;
// the data moves afterwards.
import type {
  CreateRestoreImageTaskRequest,
  CreateRestoreImageTaskResult,
  CreateStoreImageTaskRequest,
  CreateStoreImageTaskResult,
  DescribeStoreImageTasksRequest,
  DescribeStoreImageTasksResult,
  StoreImageTaskResult,
} from "@aws-sdk/client-ec2";
import type { FilterSpec } from "../../domain/filters.js";
import { newId } from "../../domain/ids.js";
import { ArchiveError, readManifest, type ArchiveManifest } from "../../formats/image-archive.js";
import { ApiError } from "../../protocol/errors.js";
import { imageByName, launchPermissions, newBlockDeviceRow, newImageRow, type ImageRow } from "../../store/meta/images.js";
import { blobsOf, getObject } from "../../store/meta/objects.js";
import { wholeRanges } from "../../store/objects/blobs.js";
import { insertSnapshot, newSnapshotRow } from "../../store/meta/snapshots.js";
import { insertTask, newTaskRow, tasksOf, type TaskRow } from "../../store/meta/tasks.js";
import { RESTORE_TASK, type RestoreParams } from "../../tasks/restore-image.js";
import { STORE_TASK, type StoreParams } from "../../tasks/store-image.js";
import { checkTags } from "../s3/object-attributes.js";
import type { ActionContext, ActionTable } from "./action.js";
import { insertNewImage, uefiDataProblem } from "./image-records.js";
import { checkDescribe, describePage, rowsInHand } from "./listing.js";
import { bucketFor, checkImageName, malformedName, visibleImage } from "./lookups.js";
import { tagSpecificationsFor } from "./tag-specifications.js";

/** AWS keeps store tasks for about 31 days. */
const TASK_RETENTION_MS = 31 * 24 * 3600 * 1000;

const STORE_STATES: Record<TaskRow["state"], string> = { running: "InProgress", completed: "Completed", failed: "Failed" };

async function planStore(ctx: ActionContext, input: CreateStoreImageTaskRequest) {
  const record = await visibleImage(ctx, input.ImageId!);
  const { image } = record;
  // The AMI must be the caller's, or shared with the caller directly (not merely public).
  if (image.account_id !== ctx.accountId && !(await launchPermissions(ctx.meta.db, image.image_id)).includes(ctx.accountId)) {
    throw new ApiError("AuthFailure", `Not authorized for image:${image.image_id}: store an AMI you own or one shared with your account.`);
  }
  if (image.state !== "available") throw new ApiError("InvalidAMIID.Unavailable", `The image id '[${image.image_id}]' is not available`);
  if (image.root_device_type !== "ebs") throw new ApiError("UnsupportedOperation", "Only EBS-backed AMIs can be stored.");
  if (image.virtualization_type === "paravirtual") throw new ApiError("UnsupportedOperation", "Paravirtual AMIs cannot be stored.");
  await bucketFor(ctx, input.Bucket!);
  let objectTags: [string, string][];
  try {
    objectTags = checkTags((input.S3ObjectTags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
  } catch (error) {
    throw new ApiError("InvalidParameterValue", `S3ObjectTags: ${(error as Error).message}.`);
  }
  return { image, objectTags };
}

async function planRestore(ctx: ActionContext, input: CreateRestoreImageTaskRequest) {
  await bucketFor(ctx, input.Bucket!);
  const object = await getObject(ctx.meta.db, input.Bucket!, input.ObjectKey!);
  if (!object) throw new ApiError("InvalidParameterValue", `The object s3://${input.Bucket}/${input.ObjectKey} does not exist.`);
  // The manifest at the archive's head names the image and its snapshots; its blocks are read later.
  let manifest: ArchiveManifest | undefined;
  let unreadable: string | undefined;
  try {
    manifest = await readManifest(ctx.blobs.read(wholeRanges(blobsOf(object))));
  } catch (error) {
    if (!(error instanceof ArchiveError)) throw error;
    unreadable = error.message;
  }
  const uefiProblem = manifest?.image.uefiData === undefined ? undefined : await uefiDataProblem(manifest.image.uefiData);
  if (uefiProblem) {
    manifest = undefined;
    unreadable = `its image's UEFI data is invalid: ${uefiProblem}`;
  }
  if (!manifest && input.Name === undefined) {
    throw new ApiError("InvalidParameterValue", `The object s3://${input.Bucket}/${input.ObjectKey} cannot be restored: ${unreadable}.`);
  }
  const name = checkImageName(input.Name ?? manifest!.image.name);
  const taken = await imageByName(ctx.meta.db, ctx, name);
  if (taken) throw new ApiError("InvalidAMIName.Duplicate", `AMI name ${name} is already in use by AMI ${taken.image_id}`);
  const tags = tagSpecificationsFor(input.TagSpecifications, ["image", "snapshot"]);
  return { name, manifest, unreadable, tags };
}

/** The new image's row, pending (or failed at once, when its object could not be read). */
function restoredImage(
  ctx: ActionContext,
  imageId: string,
  name: string,
  manifest: ArchiveManifest | undefined,
  unreadable: string | undefined,
  where: string,
): ImageRow {
  const source = manifest?.image;
  return newImageRow({
    account_id: ctx.accountId,
    region: ctx.region,
    image_id: imageId,
    name,
    description: source?.description ?? "",
    state: manifest ? "pending" : "failed",
    state_reason_code: manifest ? null : "Client.InvalidImageArchive",
    state_reason_message: manifest ? null : `The object ${where} cannot be restored: ${unreadable}.`,
    architecture: source?.architecture ?? "x86_64",
    virtualization_type: source?.virtualizationType ?? "hvm",
    root_device_name: source?.rootDeviceName ?? "/dev/xvda",
    ena_support: source?.enaSupport ? 1 : 0,
    sriov_net_support: source?.sriovNetSupport ?? null,
    boot_mode: source?.bootMode ?? null,
    tpm_support: source?.tpmSupport ?? null,
    imds_support: source?.imdsSupport ?? null,
    uefi_data: source?.uefiData ?? null,
    platform: source?.platform ?? null,
    platform_details: source?.platformDetails ?? null,
    usage_operation: source?.usageOperation ?? null,
    kernel_id: source?.kernelId ?? null,
    ramdisk_id: source?.ramdiskId ?? null,
  });
}

const STORE_FILTERS: FilterSpec<TaskRow> = {
  fields: {
    "task-state": (t: TaskRow) => STORE_STATES[t.state],
    bucket: (t: TaskRow) => (JSON.parse(t.params) as StoreParams).bucket,
  },
};

const STORE_LISTING = { filters: STORE_FILTERS, bounds: { min: 1, max: 200 }, idsParameter: "ImageIds", maxResultsParameter: "MaxResults" };

function toStoreResult(task: TaskRow): StoreImageTaskResult {
  const params = JSON.parse(task.params) as StoreParams;
  return {
    AmiId: params.imageId,
    TaskStartTime: new Date(task.created),
    Bucket: params.bucket,
    S3objectKey: params.key,
    ProgressPercentage: task.progress,
    StoreTaskState: STORE_STATES[task.state],
    StoreTaskFailureReason: task.failure ?? undefined,
  };
}

const newTask = (ctx: ActionContext, kind: string, params: StoreParams | RestoreParams): TaskRow =>
  newTaskRow({ task_id: newId("task"), kind, account_id: ctx.accountId, region: ctx.region, params });

export const storeRestoreActions: ActionTable = {
  CreateStoreImageTask: {
    check: (ctx, input: CreateStoreImageTaskRequest) => planStore(ctx, input),
    async run(ctx, input: CreateStoreImageTaskRequest, planned: Awaited<ReturnType<typeof planStore>>): Promise<CreateStoreImageTaskResult> {
      const key = `${planned.image.image_id}.bin`;
      const task = newTask(ctx, STORE_TASK, { imageId: planned.image.image_id, bucket: input.Bucket!, key, objectTags: planned.objectTags });
      await insertTask(ctx.meta.db, task);
      await ctx.tasks.start(task);
      return { ObjectKey: key };
    },
  },

  DescribeStoreImageTasks: {
    check: (_ctx, input: DescribeStoreImageTasksRequest) => checkDescribe(input, input.ImageIds, STORE_LISTING),
    async run(ctx, input: DescribeStoreImageTasksRequest): Promise<DescribeStoreImageTasksResult> {
      // ImageIds name the tasks' images, not the tasks: a filter here, and none need exist.
      const images = input.ImageIds?.length ? new Set(input.ImageIds) : undefined;
      const tasks = await tasksOf(ctx.meta.db, ctx, STORE_TASK, new Date(Date.now() - TASK_RETENTION_MS).toISOString());
      const ofImages = (task: TaskRow) => !images || images.has((JSON.parse(task.params) as StoreParams).imageId);
      const { page, nextToken } = await describePage(
        input,
        undefined,
        STORE_LISTING,
        rowsInHand(
          tasks,
          (task) => task.task_id,
          async (rows) => rows.map((task) => (ofImages(task) ? task : undefined)),
        ),
      );
      return { StoreImageTaskResults: page.map(toStoreResult), NextToken: nextToken };
    },
  },

  CreateRestoreImageTask: {
    parameterErrors: { Name: malformedName },
    check: (ctx, input: CreateRestoreImageTaskRequest) => planRestore(ctx, input),
    async run(ctx, input: CreateRestoreImageTaskRequest, planned: Awaited<ReturnType<typeof planRestore>>): Promise<CreateRestoreImageTaskResult> {
      const { name, manifest, unreadable, tags } = planned;
      const where = `s3://${input.Bucket}/${input.ObjectKey}`;
      const imageId = newId("ami");
      const now = new Date().toISOString();
      const snapshots = (manifest?.snapshots ?? []).map((s) =>
        newSnapshotRow({
          account_id: ctx.accountId,
          region: ctx.region,
          snapshot_id: newId("snap"),
          volume_size: s.volumeSize,
          state: "pending",
          progress: "0%",
          start_time: now,
          description: `Created by CreateRestoreImageTask for ${imageId} from ${where}`,
        }),
      );
      for (const snapshot of snapshots) await insertSnapshot(ctx.meta.db, snapshot);
      const devices = (manifest?.image.blockDeviceMappings ?? []).map((m) =>
        newBlockDeviceRow({
          device_name: m.deviceName,
          virtual_name: m.virtualName ?? null,
          no_device: m.noDevice ? 1 : 0,
          snapshot_id: m.ebs?.snapshot !== undefined ? snapshots[m.ebs.snapshot]!.snapshot_id : null,
          volume_size: m.ebs?.volumeSize ?? null,
          volume_type: m.ebs?.volumeType ?? null,
          iops: m.ebs?.iops ?? null,
          throughput: m.ebs?.throughput ?? null,
          delete_on_termination: m.ebs?.deleteOnTermination === undefined ? null : m.ebs.deleteOnTermination ? 1 : 0,
          encrypted: m.ebs?.encrypted === undefined ? null : m.ebs.encrypted ? 1 : 0,
        }),
      );
      const image = restoredImage(ctx, imageId, name, manifest, unreadable, where);
      await insertNewImage(
        ctx,
        { image, devices },
        snapshots.map((s) => s.snapshot_id),
        tags,
      );
      if (manifest) {
        const task = newTask(ctx, RESTORE_TASK, { imageId, bucket: input.Bucket!, key: input.ObjectKey!, snapshotIds: snapshots.map((s) => s.snapshot_id) });
        await insertTask(ctx.meta.db, task);
        await ctx.tasks.start(task);
      }
      return { ImageId: imageId };
    },
  },
};
