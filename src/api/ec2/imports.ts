// ImportImage, ImportSnapshot, DescribeImportImageTasks, DescribeImportSnapshotTasks and
// CancelImportTask. A request checks its disks' objects at once and answers with an active
// task; the conversion runs as a durable task (tasks/import-disks.ts).
import type {
  CancelImportTaskRequest,
  CancelImportTaskResult,
  DescribeImportImageTasksRequest,
  ImageDiskContainer,
  ImportImageRequest,
  ImportImageTask,
  ImportSnapshotRequest,
  ImportSnapshotTask,
  SnapshotDetail,
  SnapshotDiskContainer,
} from "@aws-sdk/client-ec2";
import { newId } from "../../domain/ids.js";
import { IMPORT_FORMATS, type ImportFormat } from "../../formats/disk/open.js";
import { percentDecoded } from "../../protocol/percent.js";
import { ApiError } from "../../protocol/errors.js";
import { conversionTaskByToken, type ConversionKind, type ConversionTaskRow } from "../../store/meta/conversion-tasks.js";
import { getObject } from "../../store/meta/objects.js";
import { detailsOf, IMPORT_IMAGE_TASK, IMPORT_SNAPSHOT_TASK, type DiskSource, type ImportDetails } from "../../tasks/import-disks.js";
import type { ActionContext, ActionTable } from "./action.js";
import { bucketFor } from "./lookups.js";
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

/** AWS lists import tasks for about a week after they end. */
const ENDED_RETENTION_MS = 7 * 24 * 3600 * 1000;
const MAX_DISKS = 21;
const MAX_PAGE = 1000;
const TASK_ID = /^import-(ami|snap)-[0-9a-f]{17}$/;
const IMAGE_TASK_ID = /^import-ami-[0-9a-f]{17}$/;
const SNAPSHOT_TASK_ID = /^import-snap-[0-9a-f]{17}$/;

const ARCHITECTURES = ["i386", "x86_64", "arm64"];
const PLATFORMS = ["Windows", "Linux"];
const LICENSE_TYPES = ["AWS", "BYOL"];
const HYPERVISORS = ["xen"];

function oneOf(value: string | undefined, allowed: readonly string[], name: string): string | undefined {
  if (value !== undefined && !allowed.includes(value))
    throw new ApiError("InvalidParameterValue", `Value (${value}) for parameter ${name} is invalid. Valid values: ${allowed.join(" | ")}.`);
  return value;
}

/**
 * Where a container's file is: a UserBucket, an s3:// URL, or a presigned http(s) URL to this
 * Kiln's own S3 (path-style, or `<bucket>.localhost` virtual-hosted). Either way the bucket must
 * be the caller's, in the request's region, and the object must exist.
 */
async function sourceOf(ctx: ActionContext, container: ImageDiskContainer | SnapshotDiskContainer, where: string): Promise<DiskSource> {
  if ("SnapshotId" in container && container.SnapshotId !== undefined) {
    throw new ApiError("InvalidParameterValue", `${where}.SnapshotId: Kiln imports disks from S3 objects; give a Url or UserBucket.`);
  }
  let bucket: string | undefined;
  let key: string | undefined;
  if (container.UserBucket && container.Url !== undefined)
    throw new ApiError("InvalidParameterCombination", `${where}: give either Url or UserBucket, not both.`);
  if (container.UserBucket) {
    bucket = container.UserBucket.S3Bucket;
    key = container.UserBucket.S3Key;
    if (!bucket || !key) throw new ApiError("MissingParameter", `${where}.UserBucket needs both S3Bucket and S3Key.`);
  } else if (container.Url !== undefined) {
    ({ bucket, key } = parseUrl(container.Url, where));
  } else {
    throw new ApiError("MissingParameter", `${where} needs a Url or a UserBucket.`);
  }
  await bucketFor(ctx, bucket);
  if (!(await getObject(ctx.meta.db, bucket, key))) throw new ApiError("InvalidParameterValue", `The object s3://${bucket}/${key} does not exist.`);
  let format: ImportFormat | undefined;
  if (container.Format !== undefined) {
    format = IMPORT_FORMATS.find((f) => f === container.Format!.toUpperCase());
    if (!format)
      throw new ApiError(
        "InvalidParameterValue",
        `${where}.Format: '${container.Format}' is not a disk image format Kiln imports (${IMPORT_FORMATS.join(" | ")}).`,
      );
  }
  return {
    bucket,
    key,
    url: container.Url,
    format,
    deviceName: "DeviceName" in container ? container.DeviceName : undefined,
    description: container.Description,
  };
}

function parseUrl(text: string, where: string): { bucket: string; key: string } {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ApiError("InvalidParameterValue", `${where}.Url '${text}' is not a URL.`);
  }
  const path = percentDecoded(url.pathname, () => new ApiError("InvalidParameterValue", `${where}.Url '${text}' has a malformed %-escape.`));
  if (url.protocol === "s3:") {
    const key = path.replace(/^\//, "");
    if (!url.hostname || !key) throw new ApiError("InvalidParameterValue", `${where}.Url must look like s3://bucket/key.`);
    return { bucket: url.hostname, key };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new ApiError("InvalidParameterValue", `${where}.Url must be an s3:// URL or a presigned http(s) URL to Kiln's S3.`);
  const virtualHost = /^(.+)\.localhost$/.exec(url.hostname);
  if (virtualHost) return { bucket: virtualHost[1]!, key: path.replace(/^\//, "") };
  const [, bucket, ...rest] = path.split("/");
  if (!bucket || rest.length === 0 || !rest.join("/")) throw new ApiError("InvalidParameterValue", `${where}.Url must name a bucket and a key of Kiln's S3.`);
  return { bucket, key: rest.join("/") };
}

function checkKms(encrypted: boolean | undefined, kmsKeyId: string | undefined): void {
  if (kmsKeyId !== undefined && !encrypted) throw new ApiError("InvalidParameterCombination", "KmsKeyId requires Encrypted to be true.");
}

async function planImportImage(ctx: ActionContext, input: ImportImageRequest) {
  const containers = input.DiskContainers ?? [];
  if (containers.length === 0) throw new ApiError("MissingParameter", "The request must contain the parameter DiskContainer.");
  if (containers.length > MAX_DISKS) throw new ApiError("InvalidParameterValue", `An import takes at most ${MAX_DISKS} disks.`);
  checkKms(input.Encrypted, input.KmsKeyId);
  oneOf(input.Architecture, ARCHITECTURES, "Architecture");
  oneOf(input.Platform, PLATFORMS, "Platform");
  oneOf(input.LicenseType, LICENSE_TYPES, "LicenseType");
  oneOf(input.Hypervisor, HYPERVISORS, "Hypervisor");
  const tags = tagSpecificationsFor(input.TagSpecifications, ["import-image-task"]).get("import-image-task") ?? [];
  const existing = input.ClientToken ? await conversionTaskByToken(ctx.meta.db, ctx, IMPORT_IMAGE_TASK, input.ClientToken) : undefined;
  if (existing) return { existing };
  const sources: DiskSource[] = [];
  for (const [i, container] of containers.entries()) sources.push(await sourceOf(ctx, container, `DiskContainer.${i + 1}`));
  const details: ImportDetails = {
    request: {
      description: input.Description,
      architecture: input.Architecture,
      platform: input.Platform,
      bootMode: input.BootMode,
      hypervisor: input.Hypervisor,
      licenseType: input.LicenseType,
      encrypted: input.Encrypted ?? false,
      kmsKeyId: input.KmsKeyId,
      roleName: input.RoleName,
      usageOperation: input.UsageOperation,
      licenseConfigurationArns: (input.LicenseSpecifications ?? []).map((l) => l.LicenseConfigurationArn ?? ""),
      comment: input.ClientData?.Comment,
    },
    sources,
    disks: [],
  };
  return { details, tags };
}

async function planImportSnapshot(ctx: ActionContext, input: ImportSnapshotRequest) {
  if (!input.DiskContainer) throw new ApiError("MissingParameter", "The request must contain the parameter DiskContainer.");
  checkKms(input.Encrypted, input.KmsKeyId);
  const tags = tagSpecificationsFor(input.TagSpecifications, ["import-snapshot-task"]).get("import-snapshot-task") ?? [];
  const existing = input.ClientToken ? await conversionTaskByToken(ctx.meta.db, ctx, IMPORT_SNAPSHOT_TASK, input.ClientToken) : undefined;
  if (existing) return { existing };
  const source = await sourceOf(ctx, input.DiskContainer, "DiskContainer");
  if (source.format === "OVA")
    throw new ApiError("InvalidParameterValue", "DiskContainer.Format: ImportSnapshot takes one disk (VHD, VHDX, VMDK, RAW or QCOW2), not an OVA.");
  const details: ImportDetails = {
    request: {
      description: input.Description,
      encrypted: input.Encrypted ?? false,
      kmsKeyId: input.KmsKeyId,
      roleName: input.RoleName,
      licenseConfigurationArns: [],
      comment: input.ClientData?.Comment,
    },
    sources: [source],
    disks: [],
  };
  return { details, tags };
}

function snapshotDetails(row: ConversionTaskRow): SnapshotDetail[] {
  const details = detailsOf(row);
  const done = row.status === "completed";
  const echo = (container: number) => {
    const source = details.sources[container]!;
    return source.url !== undefined ? { Url: source.url } : { UserBucket: { S3Bucket: source.bucket, S3Key: source.key } };
  };
  if (details.disks.length === 0) {
    return details.sources.map((source, i) => ({
      ...echo(i),
      Description: source.description,
      DeviceName: source.deviceName,
      Format: source.format,
      Status: row.status,
    }));
  }
  return details.disks.map((disk, i) => ({
    ...echo(disk.container),
    Description: details.sources[disk.container]!.description,
    DeviceName: done ? (i === 0 ? "/dev/sda1" : disk.deviceName) : disk.deviceName,
    DiskImageSize: disk.diskImageSize,
    Format: disk.format,
    SnapshotId: done ? disk.snapshotId : undefined,
    Status: done ? "completed" : row.status,
    Progress: row.status === "active" ? (row.progress ?? undefined) : undefined,
    StatusMessage: row.status === "active" ? (row.status_message ?? undefined) : undefined,
  }));
}

function toImportImageTask(row: ConversionTaskRow, tags: Tags): ImportImageTask {
  const { request, result } = detailsOf(row);
  return {
    ImportTaskId: row.task_id,
    Architecture: result?.architecture ?? request.architecture,
    Description: request.description,
    Encrypted: request.encrypted,
    KmsKeyId: request.kmsKeyId,
    Hypervisor: request.hypervisor,
    ImageId: result?.imageId,
    LicenseType: result?.licenseType ?? request.licenseType,
    Platform: result?.platform ?? request.platform,
    BootMode: (result?.bootMode ?? request.bootMode) as ImportImageTask["BootMode"],
    Progress: row.status === "active" || row.status === "deleting" ? (row.progress ?? undefined) : undefined,
    SnapshotDetails: snapshotDetails(row),
    Status: row.status,
    StatusMessage: row.status_message ?? undefined,
    LicenseSpecifications: request.licenseConfigurationArns.map((LicenseConfigurationArn) => ({ LicenseConfigurationArn })),
    UsageOperation: request.usageOperation,
    Tags: tagList(tags),
  };
}

function toImportSnapshotTask(row: ConversionTaskRow, tags: Tags): ImportSnapshotTask {
  const details = detailsOf(row);
  const [detail] = snapshotDetails(row);
  return {
    ImportTaskId: row.task_id,
    Description: details.request.description,
    SnapshotTaskDetail: {
      Description: detail?.Description,
      DiskImageSize: detail?.DiskImageSize,
      Encrypted: details.request.encrypted,
      Format: detail?.Format,
      KmsKeyId: details.request.kmsKeyId,
      Progress: row.status === "active" || row.status === "deleting" ? (row.progress ?? undefined) : undefined,
      SnapshotId: detail?.SnapshotId,
      Status: row.status,
      StatusMessage: row.status_message ?? undefined,
      Url: detail?.Url,
      UserBucket: detail?.UserBucket,
    },
    Tags: tagList(tags),
  };
}

function startImport(
  ctx: ActionContext,
  kind: ConversionKind,
  prefix: string,
  clientToken: string | undefined,
  details: ImportDetails,
  tags: { key: string; value: string }[],
) {
  const tagType = kind === IMPORT_IMAGE_TASK ? "import-image-task" : "import-snapshot-task";
  return startConversionTask(ctx, { taskId: newId(prefix), kind, clientToken, statusMessage: "pending", progress: "2", details, tagType, tags });
}

/** DescribeImportImageTasks or DescribeImportSnapshotTasks: the account's tasks of one kind, its ids of one form. */
const describeImports = <T>(kind: ConversionKind, idForm: RegExp, expecting: string, member: string, toTask: (row: ConversionTaskRow, tags: Tags) => T) => ({
  check(_ctx: ActionContext, input: DescribeImportImageTasksRequest) {
    checkTaskIds(input.ImportTaskIds, idForm, expecting);
    checkDescribe(input, input.ImportTaskIds, taskListing(MAX_PAGE));
  },
  async run(ctx: ActionContext, input: DescribeImportImageTasksRequest) {
    const query = { kind, noun: "import", ids: input.ImportTaskIds, input, maxPage: MAX_PAGE, retentionMs: ENDED_RETENTION_MS };
    const { tasks, nextToken } = await describeConversionTasks(ctx, query, toTask);
    return { [member]: tasks, NextToken: nextToken };
  },
});

export const importActions: ActionTable = {
  ImportImage: {
    check: (ctx, input: ImportImageRequest) => planImportImage(ctx, input),
    async run(ctx, input: ImportImageRequest, planned: Awaited<ReturnType<typeof planImportImage>>) {
      const row = planned.existing ?? (await startImport(ctx, IMPORT_IMAGE_TASK, "import-ami", input.ClientToken, planned.details!, planned.tags!));
      return toImportImageTask(row, await tagsOfTask(ctx, row.task_id));
    },
  },

  ImportSnapshot: {
    check: (ctx, input: ImportSnapshotRequest) => planImportSnapshot(ctx, input),
    async run(ctx, input: ImportSnapshotRequest, planned: Awaited<ReturnType<typeof planImportSnapshot>>) {
      const row = planned.existing ?? (await startImport(ctx, IMPORT_SNAPSHOT_TASK, "import-snap", input.ClientToken, planned.details!, planned.tags!));
      return toImportSnapshotTask(row, await tagsOfTask(ctx, row.task_id));
    },
  },

  DescribeImportImageTasks: describeImports(IMPORT_IMAGE_TASK, IMAGE_TASK_ID, '"import-ami-..."', "ImportImageTasks", toImportImageTask),

  DescribeImportSnapshotTasks: describeImports(IMPORT_SNAPSHOT_TASK, SNAPSHOT_TASK_ID, '"import-snap-..."', "ImportSnapshotTasks", toImportSnapshotTask),

  CancelImportTask: {
    check(ctx, input: CancelImportTaskRequest) {
      if (!input.ImportTaskId) throw new ApiError("MissingParameter", "The request must contain the parameter ImportTaskId.");
      return cancellableTask(ctx, input.ImportTaskId, TASK_ID, "import", '"import-ami-..." or "import-snap-..."');
    },
    async run(ctx, input: CancelImportTaskRequest, row: ConversionTaskRow): Promise<CancelImportTaskResult> {
      const message = input.CancelReason ? `User initiated task cancellation: ${input.CancelReason}` : "User initiated task cancellation";
      await cancelConversionTask(ctx, row, message, "import");
      return { ImportTaskId: row.task_id, PreviousState: "active", State: "deleting" };
    },
  },
};
