// ImportImage, ImportSnapshot, DescribeImportImageTasks, DescribeImportSnapshotTasks and
// CancelImportTask. A request checks its disks' objects at once and answers with an active
// task; the conversion runs as a durable task (tasks/import-disks.ts).
import type {
  CancelImportTaskRequest,
  CancelImportTaskResult,
  DescribeImportImageTasksRequest,
  DescribeImportImageTasksResult,
  DescribeImportSnapshotTasksRequest,
  DescribeImportSnapshotTasksResult,
  ImageDiskContainer,
  ImportImageRequest,
  ImportImageTask,
  ImportSnapshotRequest,
  ImportSnapshotTask,
  SnapshotDetail,
  SnapshotDiskContainer,
  Tag,
} from "@aws-sdk/client-ec2";
import { compileFilters } from "../../domain/filters.js";
import { newId } from "../../domain/ids.js";
import { decodeNextToken, encodeNextToken, pageSize } from "../../domain/pagination.js";
import { IMPORT_FORMATS, type ImportFormat } from "../../formats/disk/open.js";
import { ApiError } from "../../protocol/errors.js";
import { conversionTaskByToken, conversionTasksOf, getConversionTask, insertConversionTask, updateConversionTask, type ConversionKind, type ConversionTaskRow } from "../../store/meta/conversion-tasks.js";
import { getObject } from "../../store/meta/objects.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import { insertTask } from "../../store/meta/tasks.js";
import { detailsOf, IMPORT_IMAGE_TASK, IMPORT_SNAPSHOT_TASK, type DiskSource, type ImportDetails } from "../../tasks/import-disks.js";
import type { ActionContext, ActionTable } from "./action.js";
import { bucketFor } from "./store-restore.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tags.js";

/** AWS lists import tasks for about a week after they end. */
const ENDED_RETENTION_MS = 7 * 24 * 3600 * 1000;
const MAX_DISKS = 21;
const TASK_ID = /^import-(ami|snap)-[0-9a-f]{17}$/;

const ARCHITECTURES = ["i386", "x86_64", "arm64"];
const PLATFORMS = ["Windows", "Linux"];
const LICENSE_TYPES = ["AWS", "BYOL"];
const HYPERVISORS = ["xen"];

function oneOf(value: string | undefined, allowed: readonly string[], name: string): string | undefined {
  if (value !== undefined && !allowed.includes(value)) throw new ApiError("InvalidParameterValue", `Value (${value}) for parameter ${name} is invalid. Valid values: ${allowed.join(" | ")}.`);
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
  if (container.UserBucket && container.Url !== undefined) throw new ApiError("InvalidParameterCombination", `${where}: give either Url or UserBucket, not both.`);
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
    if (!format) throw new ApiError("InvalidParameterValue", `${where}.Format: '${container.Format}' is not a disk image format Kiln imports (${IMPORT_FORMATS.join(" | ")}).`);
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
  const path = decodeURIComponent(url.pathname);
  if (url.protocol === "s3:") {
    const key = path.replace(/^\//, "");
    if (!url.hostname || !key) throw new ApiError("InvalidParameterValue", `${where}.Url must look like s3://bucket/key.`);
    return { bucket: url.hostname, key };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new ApiError("InvalidParameterValue", `${where}.Url must be an s3:// URL or a presigned http(s) URL to Kiln's S3.`);
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
  if (source.format === "OVA") throw new ApiError("InvalidParameterValue", "DiskContainer.Format: ImportSnapshot takes one disk (VHD, VHDX, VMDK, RAW or QCOW2), not an OVA.");
  const details: ImportDetails = {
    request: { description: input.Description, encrypted: input.Encrypted ?? false, kmsKeyId: input.KmsKeyId, roleName: input.RoleName, licenseConfigurationArns: [], comment: input.ClientData?.Comment },
    sources: [source],
    disks: [],
  };
  return { details, tags };
}

/** Writes the task's two rows together (what users see, and the durable work) and starts it. */
async function startImport(ctx: ActionContext, kind: ConversionKind, prefix: string, clientToken: string | undefined, details: ImportDetails, tags: { key: string; value: string }[]) {
  const now = new Date().toISOString();
  const row: ConversionTaskRow = {
    task_id: newId(prefix),
    account_id: ctx.accountId,
    region: ctx.region,
    kind,
    client_token: clientToken ?? null,
    status: "active",
    status_message: "pending",
    progress: "2",
    details: JSON.stringify(details),
    created: now,
    updated: now,
  };
  const task = { task_id: row.task_id, kind, account_id: ctx.accountId, region: ctx.region, state: "running" as const, progress: 0, params: "{}", failure: null, created: now, updated: now };
  await ctx.meta.db.transaction().execute(async (tx) => {
    await tx.insertInto("conversion_tasks").values(row).execute();
    await insertTask(tx, task);
  });
  if (tags.length) await putTags(ctx.meta.db, ctx, [{ id: row.task_id, type: kind === IMPORT_IMAGE_TASK ? "import-image-task" : "import-snapshot-task" }], tags, TAG_LIMITS.perResource);
  ctx.tasks.start(task);
  return row;
}

const tagList = (tags: ReadonlyMap<string, string> | undefined): Tag[] => [...(tags ?? new Map<string, string>())].map(([Key, Value]) => ({ Key, Value }));

function snapshotDetails(row: ConversionTaskRow): SnapshotDetail[] {
  const details = detailsOf(row);
  const done = row.status === "completed";
  const echo = (container: number) => {
    const source = details.sources[container]!;
    return source.url !== undefined ? { Url: source.url } : { UserBucket: { S3Bucket: source.bucket, S3Key: source.key } };
  };
  if (details.disks.length === 0) {
    return details.sources.map((source, i) => ({ ...echo(i), Description: source.description, DeviceName: source.deviceName, Format: source.format, Status: row.status === "active" ? "active" : row.status }));
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

function toImportImageTask(row: ConversionTaskRow, tags: ReadonlyMap<string, string> | undefined): ImportImageTask {
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

function toImportSnapshotTask(row: ConversionTaskRow, tags: ReadonlyMap<string, string> | undefined): ImportSnapshotTask {
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

const taskFilters = (tags: ReadonlyMap<string, ReadonlyMap<string, string>>) => ({
  fields: { "task-state": (row: ConversionTaskRow) => row.status },
  tags: (row: ConversionTaskRow) => tags.get(row.task_id),
});

function checkTaskIds(ids: readonly string[] | undefined, prefix: string): void {
  for (const id of ids ?? []) {
    if (!TASK_ID.test(id) || !id.startsWith(prefix)) throw new ApiError("InvalidConversionTaskId.Malformed", `Invalid id: "${id}" (expecting "${prefix}-...")`);
  }
}

/** One page of an account's import tasks of a kind, as DescribeImport*Tasks list them. */
async function describeTasks<T>(
  ctx: ActionContext,
  kind: ConversionKind,
  input: { ImportTaskIds?: string[]; Filters?: { Name?: string; Values?: string[] }[]; MaxResults?: number; NextToken?: string },
  toTask: (row: ConversionTaskRow, tags: ReadonlyMap<string, string> | undefined) => T,
): Promise<{ tasks: T[]; nextToken?: string }> {
  const limit = pageSize(input.MaxResults, { min: 1, max: 1000 });
  const after = decodeNextToken(input.NextToken, 1)?.[0];
  const ids = input.ImportTaskIds?.length ? input.ImportTaskIds : undefined;
  let rows = await conversionTasksOf(ctx.meta.db, ctx, kind, { ids, after });
  if (ids) {
    const found = new Set(rows.map((r) => r.task_id));
    const missing = ids.filter((id) => !found.has(id));
    if (missing.length && after === undefined) throw new ApiError("InvalidConversionTaskId", `The import task ID '${missing[0]}' does not exist`);
  } else {
    const since = new Date(Date.now() - ENDED_RETENTION_MS).toISOString();
    rows = rows.filter((r) => r.status === "active" || r.status === "deleting" || r.updated >= since);
  }
  const tags = await tagsOf(ctx.meta.db, ctx, rows.map((r) => r.task_id));
  const matches = compileFilters(input.Filters, taskFilters(tags));
  rows = rows.filter(matches);
  const page = limit === undefined ? rows : rows.slice(0, limit);
  const more = limit !== undefined && rows.length > limit;
  return { tasks: page.map((row) => toTask(row, tags.get(row.task_id))), nextToken: more ? encodeNextToken([page[page.length - 1]!.task_id]) : undefined };
}

export const importActions: ActionTable = {
  ImportImage: {
    check: (ctx, input: ImportImageRequest) => planImportImage(ctx, input),
    async run(ctx, input: ImportImageRequest, planned: Awaited<ReturnType<typeof planImportImage>>) {
      const row = planned.existing ?? (await startImport(ctx, IMPORT_IMAGE_TASK, "import-ami", input.ClientToken, planned.details!, planned.tags!));
      const tags = (await tagsOf(ctx.meta.db, ctx, [row.task_id])).get(row.task_id);
      return toImportImageTask(row, tags);
    },
  },

  ImportSnapshot: {
    check: (ctx, input: ImportSnapshotRequest) => planImportSnapshot(ctx, input),
    async run(ctx, input: ImportSnapshotRequest, planned: Awaited<ReturnType<typeof planImportSnapshot>>) {
      const row = planned.existing ?? (await startImport(ctx, IMPORT_SNAPSHOT_TASK, "import-snap", input.ClientToken, planned.details!, planned.tags!));
      const tags = (await tagsOf(ctx.meta.db, ctx, [row.task_id])).get(row.task_id);
      return toImportSnapshotTask(row, tags);
    },
  },

  DescribeImportImageTasks: {
    check(_ctx, input: DescribeImportImageTasksRequest) {
      checkTaskIds(input.ImportTaskIds, "import-ami");
      pageSize(input.MaxResults, { min: 1, max: 1000 });
    },
    async run(ctx, input: DescribeImportImageTasksRequest): Promise<DescribeImportImageTasksResult> {
      const { tasks, nextToken } = await describeTasks(ctx, IMPORT_IMAGE_TASK, input, toImportImageTask);
      return { ImportImageTasks: tasks, NextToken: nextToken };
    },
  },

  DescribeImportSnapshotTasks: {
    check(_ctx, input: DescribeImportSnapshotTasksRequest) {
      checkTaskIds(input.ImportTaskIds, "import-snap");
      pageSize(input.MaxResults, { min: 1, max: 1000 });
    },
    async run(ctx, input: DescribeImportSnapshotTasksRequest): Promise<DescribeImportSnapshotTasksResult> {
      const { tasks, nextToken } = await describeTasks(ctx, IMPORT_SNAPSHOT_TASK, input, toImportSnapshotTask);
      return { ImportSnapshotTasks: tasks, NextToken: nextToken };
    },
  },

  CancelImportTask: {
    async check(ctx, input: CancelImportTaskRequest) {
      const id = input.ImportTaskId;
      if (!id) throw new ApiError("MissingParameter", "The request must contain the parameter ImportTaskId.");
      if (!TASK_ID.test(id)) throw new ApiError("InvalidConversionTaskId.Malformed", `Invalid id: "${id}" (expecting "import-ami-..." or "import-snap-...")`);
      const row = await getConversionTask(ctx.meta.db, id);
      if (!row || row.account_id !== ctx.accountId || row.region !== ctx.region) throw new ApiError("InvalidConversionTaskId", `The import task ID '${id}' does not exist`);
      if (row.status !== "active") throw new ApiError("IncorrectState", `The import task ${id} is ${row.status}; only an active task can be cancelled.`);
      return row;
    },
    async run(ctx, input: CancelImportTaskRequest, row: ConversionTaskRow): Promise<CancelImportTaskResult> {
      const message = input.CancelReason ? `User initiated task cancellation: ${input.CancelReason}` : "User initiated task cancellation";
      if (!(await updateConversionTask(ctx.meta.db, row.task_id, { status: "deleting", status_message: message }, "active"))) {
        throw new ApiError("IncorrectState", `The import task ${row.task_id} is no longer active.`);
      }
      ctx.tasks.cancel(row.task_id, message);
      return { ImportTaskId: row.task_id, PreviousState: "active", State: "deleting" };
    },
  },
};
