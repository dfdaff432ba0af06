// ExportImage, DescribeExportImageTasks and CancelExportTask: an AMI's root volume out to a
// bucket as a VMDK, VHD or RAW file named <S3Prefix><export-ami-id>.<format>, as AWS names it.
import type {
  CancelExportTaskRequest,
  DescribeExportImageTasksRequest,
  DescribeExportImageTasksResult,
  ExportImageRequest,
  ExportImageResult,
  ExportImageTask,
} from "@aws-sdk/client-ec2";
import { newId } from "../../domain/ids.js";
import { ApiError } from "../../protocol/errors.js";
import { conversionTaskByToken, type ConversionTaskRow } from "../../store/meta/conversion-tasks.js";
import { snapshotById } from "../../store/meta/snapshots.js";
import { EXPORT_IMAGE_TASK, EXPORT_WRITERS, exportDetailsOf, type ExportDetails, type ExportFormat } from "../../tasks/export-image.js";
import type { ActionContext, ActionTable } from "./action.js";
import { bucketFor, ownImage } from "./lookups.js";
import {
  cancelConversionTask,
  cancellableTask,
  checkTaskIds,
  describeConversionTasks,
  startConversionTask,
  tagList,
  tagsOfTask,
  taskListing,
  type Tags,
} from "./conversion-tasks.js";
import { checkDescribe } from "./listing.js";
import { tagSpecificationsFor } from "./tag-specifications.js";

const GIB = 1024 ** 3;
const TASK_ID = /^export-ami-[0-9a-f]{17}$/;
const MAX_PAGE = 500;

async function planExport(ctx: ActionContext, input: ExportImageRequest) {
  const tags = tagSpecificationsFor(input.TagSpecifications, ["export-image-task"]).get("export-image-task") ?? [];
  const existing = input.ClientToken ? await conversionTaskByToken(ctx.meta.db, ctx, EXPORT_IMAGE_TASK, input.ClientToken) : undefined;
  if (existing) return { existing };
  const { image, devices } = await ownImage(ctx, input.ImageId!);
  if (image.state !== "available") throw new ApiError("InvalidAMIID.Unavailable", `The image id '[${image.image_id}]' is not available`);
  if (image.root_device_type !== "ebs") throw new ApiError("UnsupportedOperation", "Only EBS-backed AMIs can be exported.");
  // The root volume is what a virtual machine boots; it is what the exported file holds.
  const root = devices.find((d) => d.device_name === image.root_device_name && d.snapshot_id) ?? devices.find((d) => d.snapshot_id);
  if (!root?.snapshot_id) throw new ApiError("InvalidParameterValue", `The image ${image.image_id} has no EBS volume to export.`);
  const snapshot = await snapshotById(ctx.meta.db, root.snapshot_id);
  if (!snapshot) throw new ApiError("InvalidParameterValue", `The snapshot ${root.snapshot_id} of ${image.image_id} no longer exists.`);
  const location = input.S3ExportLocation!;
  await bucketFor(ctx, location.S3Bucket!);
  const format = input.DiskImageFormat as ExportFormat;
  const taskId = newId("export-ami");
  const prefix = location.S3Prefix ?? "";
  const details: ExportDetails = {
    imageId: image.image_id,
    snapshotId: root.snapshot_id,
    diskBytes: (root.volume_size ?? snapshot.volume_size) * GIB,
    format,
    bucket: location.S3Bucket!,
    prefix,
    key: `${prefix}${taskId}.${EXPORT_WRITERS[format].extension}`,
    description: input.Description,
    roleName: input.RoleName,
  };
  return { taskId, details, tags };
}

function toExportTask(row: ConversionTaskRow, tags: Tags): ExportImageTask & Pick<ExportImageResult, "DiskImageFormat" | "RoleName"> {
  const details = exportDetailsOf(row);
  return {
    ExportImageTaskId: row.task_id,
    Description: details.description,
    ImageId: details.imageId,
    DiskImageFormat: details.format,
    RoleName: details.roleName,
    Progress: row.status === "active" ? (row.progress ?? undefined) : undefined,
    S3ExportLocation: { S3Bucket: details.bucket, S3Prefix: details.prefix || undefined },
    Status: row.status,
    StatusMessage: row.status_message ?? undefined,
    Tags: tagList(tags),
  };
}

export const exportActions: ActionTable = {
  ExportImage: {
    check: (ctx, input: ExportImageRequest) => planExport(ctx, input),
    async run(ctx, input: ExportImageRequest, planned: Awaited<ReturnType<typeof planExport>>): Promise<ExportImageResult> {
      const row =
        planned.existing ??
        (await startConversionTask(ctx, {
          taskId: planned.taskId!,
          kind: EXPORT_IMAGE_TASK,
          clientToken: input.ClientToken,
          statusMessage: "validating",
          progress: "0",
          details: planned.details,
          tagType: "export-image-task",
          tags: planned.tags!,
        }));
      return toExportTask(row, await tagsOfTask(ctx, row.task_id));
    },
  },

  DescribeExportImageTasks: {
    check(_ctx, input: DescribeExportImageTasksRequest) {
      checkTaskIds(input.ExportImageTaskIds, TASK_ID, '"export-ami-..."');
      checkDescribe(input, input.ExportImageTaskIds, taskListing(MAX_PAGE));
    },
    async run(ctx, input: DescribeExportImageTasksRequest): Promise<DescribeExportImageTasksResult> {
      const { tasks, nextToken } = await describeConversionTasks(
        ctx,
        { kind: EXPORT_IMAGE_TASK, noun: "export", ids: input.ExportImageTaskIds, input, maxPage: MAX_PAGE },
        toExportTask,
      );
      return { ExportImageTasks: tasks, NextToken: nextToken };
    },
  },

  CancelExportTask: {
    check: (ctx, input: CancelExportTaskRequest) => cancellableTask(ctx, input.ExportTaskId!, TASK_ID, "export", '"export-ami-..."'),
    async run(ctx, _input: CancelExportTaskRequest, row: ConversionTaskRow) {
      await cancelConversionTask(ctx, row, "User initiated task cancellation", "export");
    },
  },
};
