// Images as Kiln writes and shows them, shared by every action that makes or shows one
// (RegisterImage, CreateImage, CopyImage, restores, RunInstances' mappings): a new image with
// its tags, the Image shape, and block device mappings read from a request.
import type { BlockDeviceMapping, Image } from "@aws-sdk/client-ec2";
import { decodeAwsUefiData } from "../../formats/uefi/aws-uefi-data.js";
import { UefiVariableStoreError } from "../../formats/uefi/variable.js";
import { ApiError } from "../../protocol/errors.js";
import { insertImage, newBlockDeviceRow, type BlockDeviceRow, type ImageRecord, type ImageRow } from "../../store/meta/images.js";
import { deleteSnapshot, getSnapshot } from "../../store/meta/snapshots.js";
import { putTags } from "../../store/meta/tags.js";
import type { ActionContext } from "./action.js";
import { checkSnapshotId, snapshotNotFound } from "./lookups.js";
import { TAG_LIMITS } from "./tag-specifications.js";

/**
 * Writes a new image over the new snapshots made for it, and tags both as the request's
 * TagSpecifications ask. A name another request took meanwhile leaves nothing of this one.
 */
export async function insertNewImage(
  ctx: ActionContext,
  record: ImageRecord,
  snapshotIds: readonly string[],
  tags: ReadonlyMap<string, { key: string; value: string }[]>,
): Promise<void> {
  if (!(await insertImage(ctx.meta.db, record))) {
    for (const snapshotId of snapshotIds) await deleteSnapshot(ctx.meta.db, ctx, snapshotId);
    throw new ApiError("InvalidAMIName.Duplicate", `AMI name ${record.image.name} is already in use`);
  }
  const imageTags = tags.get("image") ?? [];
  const snapshotTags = tags.get("snapshot") ?? [];
  if (imageTags.length) await putTags(ctx.meta.db, ctx, [{ id: record.image.image_id, type: "image" }], imageTags, TAG_LIMITS.perResource);
  if (snapshotTags.length && snapshotIds.length)
    await putTags(
      ctx.meta.db,
      ctx,
      snapshotIds.map((id) => ({ id, type: "snapshot" })),
      snapshotTags,
      TAG_LIMITS.perResource,
    );
}

function toMapping(device: BlockDeviceRow): BlockDeviceMapping {
  if (device.no_device) return { DeviceName: device.device_name, NoDevice: "" };
  if (device.virtual_name) return { DeviceName: device.device_name, VirtualName: device.virtual_name };
  return {
    DeviceName: device.device_name,
    Ebs: {
      SnapshotId: device.snapshot_id ?? undefined,
      VolumeSize: device.volume_size ?? undefined,
      VolumeType: (device.volume_type ?? undefined) as NonNullable<BlockDeviceMapping["Ebs"]>["VolumeType"],
      DeleteOnTermination: device.delete_on_termination === null ? undefined : Boolean(device.delete_on_termination),
      Encrypted: device.encrypted === null ? undefined : Boolean(device.encrypted),
      Iops: device.iops ?? undefined,
      Throughput: device.throughput ?? undefined,
      KmsKeyId: device.kms_key_id ?? undefined,
    },
  };
}

/** What EC2 bills an image as: what its publisher registered, or Windows or Linux/UNIX by its platform. */
export const platformDetailsOf = (image: ImageRow) => image.platform_details ?? (image.platform === "windows" ? "Windows" : "Linux/UNIX");
export const usageOperationOf = (image: ImageRow) => image.usage_operation ?? (image.platform === "windows" ? "RunInstances:0002" : "RunInstances");

export function toImage(record: ImageRecord, tags: ReadonlyMap<string, string>): Image {
  const { image, devices } = record;
  return {
    ImageId: image.image_id,
    ImageLocation: `${image.owner_alias ?? image.account_id}/${image.name}`,
    State: image.state,
    OwnerId: image.account_id,
    CreationDate: image.creation_date,
    Public: Boolean(image.public),
    Architecture: image.architecture as Image["Architecture"],
    ImageType: "machine",
    KernelId: image.kernel_id ?? undefined,
    RamdiskId: image.ramdisk_id ?? undefined,
    Platform: (image.platform ?? undefined) as Image["Platform"],
    PlatformDetails: platformDetailsOf(image),
    UsageOperation: usageOperationOf(image),
    Name: image.name,
    Description: image.description || undefined,
    RootDeviceType: image.root_device_type as Image["RootDeviceType"],
    RootDeviceName: image.root_device_name,
    BlockDeviceMappings: devices.map(toMapping),
    VirtualizationType: image.virtualization_type as Image["VirtualizationType"],
    Hypervisor: "xen",
    EnaSupport: Boolean(image.ena_support),
    SriovNetSupport: image.sriov_net_support ?? undefined,
    BootMode: (image.boot_mode ?? undefined) as Image["BootMode"],
    TpmSupport: (image.tpm_support ?? undefined) as Image["TpmSupport"],
    ImdsSupport: (image.imds_support ?? undefined) as Image["ImdsSupport"],
    DeprecationTime: image.deprecation_time ?? undefined,
    ImageOwnerAlias: image.owner_alias ?? undefined,
    SourceInstanceId: image.source_instance_id ?? undefined,
    StateReason: image.state_reason_code ? { Code: image.state_reason_code, Message: image.state_reason_message ?? "" } : undefined,
    Tags: tags.size ? [...tags].map(([Key, Value]) => ({ Key, Value })) : undefined,
  };
}

/**
 * Most block device mappings one request may give: an instance attaches at most a few dozen
 * volumes, and every mapping costs a lookup (and, in a launch, a volume per instance).
 */
export const MAX_BLOCK_DEVICE_MAPPINGS = 128;

export function checkMappingCount(mappings: readonly BlockDeviceMapping[] | undefined): void {
  if ((mappings?.length ?? 0) > MAX_BLOCK_DEVICE_MAPPINGS) {
    throw new ApiError("InvalidBlockDeviceMapping", `A request may give at most ${MAX_BLOCK_DEVICE_MAPPINGS} block device mappings.`);
  }
}

/** Block device mappings of a request, checked against the caller's snapshots. */
export async function blockDevicesFrom(ctx: ActionContext, mappings: readonly BlockDeviceMapping[]): Promise<BlockDeviceRow[]> {
  checkMappingCount(mappings);
  const devices: BlockDeviceRow[] = [];
  const names = new Set<string>();
  for (const [i, mapping] of mappings.entries()) {
    if (!mapping.DeviceName) throw new ApiError("MissingParameter", `The request must contain the parameter BlockDeviceMapping.${i + 1}.DeviceName`);
    if (names.has(mapping.DeviceName)) {
      throw new ApiError("InvalidBlockDeviceMapping", `The device '${mapping.DeviceName}' is used in more than one block device mapping.`);
    }
    names.add(mapping.DeviceName);
    const base = newBlockDeviceRow({ device_name: mapping.DeviceName });
    if (mapping.NoDevice !== undefined) {
      devices.push({ ...base, no_device: 1 });
      continue;
    }
    if (mapping.VirtualName) {
      devices.push({ ...base, virtual_name: mapping.VirtualName });
      continue;
    }
    const ebs = mapping.Ebs;
    if (!ebs) throw new ApiError("InvalidBlockDeviceMapping", `The block device mapping for ${mapping.DeviceName} needs Ebs, VirtualName or NoDevice.`);
    let size = ebs.VolumeSize;
    let encrypted = ebs.Encrypted;
    if (ebs.SnapshotId) {
      const snapshot = await getSnapshot(ctx.meta.db, ctx, checkSnapshotId(ebs.SnapshotId));
      if (!snapshot) throw snapshotNotFound([ebs.SnapshotId]);
      if (snapshot.state !== "completed") throw new ApiError("IncorrectState", `Snapshot ${snapshot.snapshot_id} is in invalid state - ${snapshot.state}`);
      if (size !== undefined && size < snapshot.volume_size) {
        throw new ApiError(
          "InvalidBlockDeviceMapping",
          `Volume of size ${size} is smaller than snapshot '${snapshot.snapshot_id}', expect size >= ${snapshot.volume_size}`,
        );
      }
      size ??= snapshot.volume_size;
      encrypted ??= Boolean(snapshot.encrypted);
    } else if (size === undefined) {
      throw new ApiError("InvalidBlockDeviceMapping", `The block device mapping for ${mapping.DeviceName} needs a SnapshotId or a VolumeSize.`);
    }
    devices.push({
      ...base,
      snapshot_id: ebs.SnapshotId ?? null,
      volume_size: size,
      volume_type: ebs.VolumeType ?? "gp2",
      delete_on_termination: ebs.DeleteOnTermination === false ? 0 : 1,
      encrypted: encrypted ? 1 : 0,
      iops: ebs.Iops ?? null,
      throughput: ebs.Throughput ?? null,
      kms_key_id: ebs.KmsKeyId ?? null,
    });
  }
  return devices;
}

/**
 * Why UEFI data cannot be an image's, or undefined when it can: it is read when it comes in
 * (RegisterImage, a restored archive), so an image never carries variables its instances'
 * firmware could not be given.
 */
export async function uefiDataProblem(text: string): Promise<string | undefined> {
  try {
    await decodeAwsUefiData(text);
    return undefined;
  } catch (error) {
    if (error instanceof UefiVariableStoreError) return error.message;
    throw error;
  }
}
