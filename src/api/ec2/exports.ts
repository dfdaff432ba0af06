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
import { compileFilters } from "../../domain/filters.js";
import { newId } from "../../domain/ids.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { ApiError } from "../../protocol/errors.js";
import { conversionTaskByToken, conversionTasksOf, getConversionTask, updateConversionTask, type ConversionTaskRow } from "../../store/meta/conversion-tasks.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import { insertTask } from "../../store/meta/tasks.js";
import { EXPORT_IMAGE_TASK, EXPORT_WRITERS, exportDetailsOf, type ExportDetails, type ExportFormat } from "../../tasks/export-image.js";
import type { ActionContext, ActionTable } from "./action.js";
import { ownImage } from "./images.js";
import { bucketFor } from "./store-restore.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tags.js";

const GIB = 1024 ** 3;
const TASK_ID = /^export-ami-[0-9a-f]{17}$/;

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
  const snapshot = await ctx.meta.db.selectFrom("snapshots").select(["volume_size", "encrypted"]).where("snapshot_id", "=", root.snapshot_id).executeTakeFirst();
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

const tagList = (tags: ReadonlyMap<string, string> | undefined) => [...(tags ?? new Map<string, string>())].map(([Key, Value]) => ({ Key, Value }));

function toExportTask(row: ConversionTaskRow, tags: ReadonlyMap<string, string> | undefined): ExportImageTask & Pick<ExportImageResult, "DiskImageFormat" | "RoleName"> {
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
      let row = planned.existing;
      if (!row) {
        const now = new Date().toISOString();
        row = {
          task_id: planned.taskId!,
          account_id: ctx.accountId,
          region: ctx.region,
          kind: EXPORT_IMAGE_TASK,
          client_token: input.ClientToken ?? null,
          status: "active",
          status_message: "validating",
          progress: "0",
          details: JSON.stringify(planned.details),
          created: now,
          updated: now,
        };
        const task = { task_id: row.task_id, kind: EXPORT_IMAGE_TASK, account_id: ctx.accountId, region: ctx.region, state: "running" as const, progress: 0, params: "{}", failure: null, created: now, updated: now };
        await ctx.meta.db.transaction().execute(async (tx) => {
          await tx.insertInto("conversion_tasks").values(row!).execute();
          await insertTask(tx, task);
        });
        if (planned.tags!.length) await putTags(ctx.meta.db, ctx, [{ id: row.task_id, type: "export-image-task" }], planned.tags!, TAG_LIMITS.perResource);
        ctx.tasks.start(task);
      }
      return toExportTask(row, (await tagsOf(ctx.meta.db, ctx, [row.task_id])).get(row.task_id));
    },
  },

  DescribeExportImageTasks: {
    check(_ctx, input: DescribeExportImageTasksRequest) {
      for (const id of input.ExportImageTaskIds ?? []) {
        if (!TASK_ID.test(id)) throw new ApiError("InvalidConversionTaskId.Malformed", `Invalid id: "${id}" (expecting "export-ami-...")`);
      }
      pageSize(input.MaxResults, { min: 1, max: 500 });
    },
    async run(ctx, input: DescribeExportImageTasksRequest): Promise<DescribeExportImageTasksResult> {
      const limit = pageSize(input.MaxResults, { min: 1, max: 500 });
      const after = decodeNextToken(input.NextToken, 1)?.[0];
      const ids = input.ExportImageTaskIds?.length ? input.ExportImageTaskIds : undefined;
      let rows = await conversionTasksOf(ctx.meta.db, ctx, EXPORT_IMAGE_TASK, { ids, after });
      if (ids && after === undefined) {
        const found = new Set(rows.map((r) => r.task_id));
        const missing = ids.find((id) => !found.has(id));
        if (missing) throw new ApiError("InvalidConversionTaskId", `The export task ID '${missing}' does not exist`);
      }
      const tags = await tagsOf(ctx.meta.db, ctx, rows.map((r) => r.task_id));
      rows = rows.filter(compileFilters(input.Filters, { fields: { "task-state": (r: ConversionTaskRow) => r.status }, tags: (r: ConversionTaskRow) => tags.get(r.task_id) }));
      const page = limit === undefined ? rows : rows.slice(0, limit);
      const more = limit !== undefined && rows.length > limit;
      return { ExportImageTasks: page.map((r) => toExportTask(r, tags.get(r.task_id))), NextToken: more ? encodeNextToken([page[page.length - 1]!.task_id]) : undefined };
    },
  },

  CancelExportTask: {
    async check(ctx, input: CancelExportTaskRequest) {
      const id = input.ExportTaskId!;
      if (!TASK_ID.test(id)) throw new ApiError("InvalidConversionTaskId.Malformed", `Invalid id: "${id}" (Kiln cancels export-ami-... tasks)`);
      const row = await getConversionTask(ctx.meta.db, id);
      if (!row || row.account_id !== ctx.accountId || row.region !== ctx.region) throw new ApiError("InvalidConversionTaskId", `The export task ID '${id}' does not exist`);
      if (row.status !== "active") throw new ApiError("IncorrectState", `The export task ${id} is ${row.status}; only an active task can be cancelled.`);
      return row;
    },
    async run(ctx, _input: CancelExportTaskRequest, row: ConversionTaskRow) {
      const message = "User initiated task cancellation";
      if (!(await updateConversionTask(ctx.meta.db, row.task_id, { status: "deleting", status_message: message }, "active"))) {
        throw new ApiError("IncorrectState", `The export task ${row.task_id} is no longer active.`);
      }
      ctx.tasks.cancel(row.task_id, message);
    },
  },
};
