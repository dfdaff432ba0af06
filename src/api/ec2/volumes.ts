// CreateVolume, DescribeVolumes, DeleteVolume. A volume's data is a manifest of chunks: from a
// snapshot it starts as the snapshot's and shares its chunks, so a 1 TiB volume costs nothing
// until it differs.
import type {
  AttachVolumeRequest,
  CreateVolumeRequest,
  DeleteVolumeRequest,
  DescribeVolumesRequest,
  DescribeVolumesResult,
  DetachVolumeRequest,
  Volume,
  VolumeAttachment,
} from "@aws-sdk/client-ec2";
import { attachmentsOf, attachVolume, detachVolume, type AttachmentRow } from "../../store/meta/instances.js";
import type { FilterSpec } from "../../domain/filters.js";
import { newId, requestedIds } from "../../domain/ids.js";
import { zonesOf } from "../../domain/regions.js";
import { transition } from "../../domain/transitions.js";
import { ApiError } from "../../protocol/errors.js";
import { getSnapshot } from "../../store/meta/snapshots.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import { deleteVolume, getVolume, insertVolume, listVolumes, newVolumeRow, type VolumeRow } from "../../store/meta/volumes.js";
import type { ActionContext, ActionTable } from "./action.js";
import { checkSnapshotId, checkVolumeId, instancesOf, snapshotNotFound, volumeNotFound, volumeOf } from "./lookups.js";
import { checkDescribe, describePage, withTags } from "./listing.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";

/** Size bounds (GiB) of each volume type, as AWS documents them. */
const SIZE_BOUNDS: Record<string, [number, number]> = {
  standard: [1, 1024],
  gp2: [1, 16384],
  gp3: [1, 16384],
  io1: [4, 16384],
  io2: [4, 65536],
  st1: [125, 16384],
  sc1: [125, 16384],
};

interface Described {
  row: VolumeRow;
  tags: ReadonlyMap<string, string>;
  attachment?: AttachmentRow;
}

const attachmentOf = (a: AttachmentRow, state: VolumeAttachment["State"] = "attached"): VolumeAttachment => ({
  VolumeId: a.volume_id,
  InstanceId: a.instance_id,
  Device: a.device,
  State: state,
  AttachTime: new Date(a.attach_time),
  DeleteOnTermination: Boolean(a.delete_on_termination),
});

/** A volume attached to an instance is in-use, whatever its own row says. */
const stateOf = (d: Described) => (d.attachment && d.row.state === "available" ? "in-use" : d.row.state);

const FILTERS: FilterSpec<Described> = {
  fields: {
    "availability-zone": (v: Described) => v.row.availability_zone,
    "create-time": (v: Described) => v.row.create_time,
    encrypted: (v: Described) => String(Boolean(v.row.encrypted)),
    "multi-attach-enabled": (v: Described) => String(Boolean(v.row.multi_attach_enabled)),
    "fast-restored": () => "false",
    size: (v: Described) => String(v.row.size),
    "snapshot-id": (v: Described) => v.row.snapshot_id ?? "",
    status: (v: Described) => stateOf(v),
    "attachment.instance-id": (v: Described) => v.attachment?.instance_id,
    "attachment.device": (v: Described) => v.attachment?.device,
    "attachment.status": (v: Described) => (v.attachment ? "attached" : undefined),
    "attachment.delete-on-termination": (v: Described) => (v.attachment ? String(Boolean(v.attachment.delete_on_termination)) : undefined),
    "attachment.attach-time": (v: Described) => v.attachment?.attach_time,
    "volume-id": (v: Described) => v.row.volume_id,
    "volume-type": (v: Described) => v.row.volume_type,
  },
  tags: (v: Described) => v.tags,
};

const LISTING = { filters: FILTERS, bounds: { min: 5, max: 500 }, checkId: checkVolumeId, idsParameter: "volumeSet" };

export function toVolume(described: Described): Volume {
  const { row, tags, attachment } = described;
  return {
    VolumeId: row.volume_id,
    Size: row.size,
    SnapshotId: row.snapshot_id ?? "",
    AvailabilityZone: row.availability_zone,
    State: stateOf(described),
    CreateTime: new Date(row.create_time),
    Attachments: attachment ? [attachmentOf(attachment)] : [],
    VolumeType: row.volume_type as Volume["VolumeType"],
    Iops: row.iops ?? undefined,
    Throughput: row.throughput ?? undefined,
    Encrypted: Boolean(row.encrypted),
    KmsKeyId: row.kms_key_id ?? undefined,
    MultiAttachEnabled: Boolean(row.multi_attach_enabled),
    Tags: tags.size ? [...tags].map(([Key, Value]) => ({ Key, Value })) : undefined,
  };
}

/** Validates a CreateVolume request and works out the volume it makes (without writing it). */
async function plan(ctx: ActionContext, input: CreateVolumeRequest): Promise<{ row: VolumeRow; tags: { key: string; value: string }[] }> {
  const zone = input.AvailabilityZone ?? zonesOf(ctx.region).find((z) => z.zoneId === input.AvailabilityZoneId)?.zoneName;
  if (!input.AvailabilityZone && !input.AvailabilityZoneId) throw new ApiError("MissingParameter", "The request must contain the parameter AvailabilityZone");
  if (!zone || !zonesOf(ctx.region).some((z) => z.zoneName === zone)) {
    throw new ApiError("InvalidParameterValue", `Invalid availability zone: [${input.AvailabilityZone ?? input.AvailabilityZoneId}]`);
  }
  const snapshot = input.SnapshotId ? await getSnapshot(ctx.meta.db, ctx, checkSnapshotId(input.SnapshotId)) : undefined;
  if (input.SnapshotId && !snapshot) throw snapshotNotFound([input.SnapshotId]);
  if (snapshot && snapshot.state !== "completed") throw new ApiError("IncorrectState", `Snapshot is in invalid state - ${snapshot.state}`);
  if (input.Size === undefined && !snapshot) throw new ApiError("MissingParameter", "The request must contain the parameter size or snapshotId");
  const type = input.VolumeType ?? "gp2";
  const size = input.Size ?? snapshot!.volume_size;
  const [min, max] = SIZE_BOUNDS[type] ?? [1, 16384];
  if (size < min || size > max) throw new ApiError("InvalidParameterValue", `Volume size ${size} GiB is not within ${min}–${max} GiB for volume type ${type}.`);
  if (snapshot && size < snapshot.volume_size) {
    throw new ApiError("InvalidParameterValue", `Volume of ${size}GiB is too small; minimum is ${snapshot.volume_size}GiB.`);
  }
  if ((type === "io1" || type === "io2") && input.Iops === undefined)
    throw new ApiError("MissingParameter", `The parameter iops must be specified for ${type} volumes.`);
  if (input.Iops !== undefined && !["io1", "io2", "gp3"].includes(type))
    throw new ApiError("InvalidParameterCombination", `The parameter iops is not supported for ${type} volumes.`);
  if (input.Throughput !== undefined && type !== "gp3")
    throw new ApiError("InvalidParameterCombination", `The parameter throughput is not supported for ${type} volumes.`);
  const iops = type === "gp2" ? Math.min(16000, Math.max(100, 3 * size)) : type === "gp3" ? (input.Iops ?? 3000) : (input.Iops ?? null);
  const tags = tagSpecificationsFor(input.TagSpecifications, ["volume"]).get("volume") ?? [];
  const now = Date.now();
  return {
    row: newVolumeRow({
      account_id: ctx.accountId,
      region: ctx.region,
      volume_id: newId("vol"),
      size,
      snapshot_id: snapshot?.snapshot_id ?? null,
      availability_zone: zone,
      ...transition<VolumeRow["state"]>("creating", "available", ctx.config.stateDelayMs, now),
      volume_type: type,
      iops,
      throughput: type === "gp3" ? (input.Throughput ?? 125) : null,
      encrypted: input.Encrypted || snapshot?.encrypted ? 1 : 0,
      kms_key_id: input.KmsKeyId ?? snapshot?.kms_key_id ?? null,
      multi_attach_enabled: input.MultiAttachEnabled ? 1 : 0,
      create_time: new Date(now).toISOString(),
      client_token: input.ClientToken ?? null,
    }),
    tags,
  };
}

async function planAttach(ctx: ActionContext, input: AttachVolumeRequest) {
  const volume = await volumeOf(ctx, input.VolumeId!);
  const [instance] = await instancesOf(ctx, [input.InstanceId!]);
  if (!["running", "stopped", "pending", "stopping"].includes(instance!.state)) {
    throw new ApiError("IncorrectInstanceState", `Instance '${instance!.row.instance_id}' is not 'running' or 'stopped'.`);
  }
  const [attached] = await attachmentsOf(ctx.meta.db, { volumeIds: [volume.volume_id] });
  if (attached) throw new ApiError("VolumeInUse", `${volume.volume_id} is already attached to an instance`);
  if (volume.state !== "available") throw new ApiError("IncorrectState", `vol '${volume.volume_id}' is not 'available'.`);
  if (volume.availability_zone !== instance!.row.availability_zone) {
    throw new ApiError(
      "InvalidParameterValue",
      `Volume ${volume.volume_id} is in ${volume.availability_zone}, instance ${instance!.row.instance_id} in ${instance!.row.availability_zone}.`,
    );
  }
  const taken = await attachmentsOf(ctx.meta.db, { instanceIds: [instance!.row.instance_id] });
  if (taken.some((a) => a.device === input.Device)) {
    throw new ApiError("InvalidParameterValue", `Invalid value '${input.Device}' for unixDevice. Attachment point ${input.Device} is already in use`);
  }
  return { volume, instance: instance! };
}

export const volumeActions: ActionTable = {
  AttachVolume: {
    check: (ctx, input: AttachVolumeRequest) => planAttach(ctx, input),
    async run(ctx, input: AttachVolumeRequest, planned: Awaited<ReturnType<typeof planAttach>>): Promise<VolumeAttachment> {
      const { volume, instance } = planned;
      const attachment = {
        volume_id: volume.volume_id,
        instance_id: instance.row.instance_id,
        device: input.Device!,
        attach_time: new Date().toISOString(),
        delete_on_termination: 0,
      };
      await attachVolume(ctx.meta.db, attachment);
      await ctx.machines.plug(instance.row.instance_id, volume.volume_id);
      return attachmentOf(attachment, "attaching");
    },
  },

  DetachVolume: {
    async check(ctx, input: DetachVolumeRequest) {
      const volume = await volumeOf(ctx, input.VolumeId!);
      const [attachment] = await attachmentsOf(ctx.meta.db, { volumeIds: [volume.volume_id] });
      if (!attachment || (input.InstanceId && attachment.instance_id !== input.InstanceId)) {
        throw new ApiError("IncorrectState", `Volume '${volume.volume_id}' is in the 'available' state.`);
      }
    },
    async run(ctx, input: DetachVolumeRequest): Promise<VolumeAttachment> {
      const [attachment] = await attachmentsOf(ctx.meta.db, { volumeIds: [input.VolumeId!] });
      await ctx.machines.unplug(attachment!.instance_id, input.VolumeId!, input.Force ?? false);
      await detachVolume(ctx.meta.db, input.VolumeId!);
      return attachmentOf(attachment!, "detaching");
    },
  },

  CreateVolume: {
    check: (ctx, input: CreateVolumeRequest) => plan(ctx, input),
    async run(ctx, input: CreateVolumeRequest, planned: Awaited<ReturnType<typeof plan>>): Promise<Volume> {
      if (input.ClientToken) {
        const earlier = await getVolume(ctx.meta.db, ctx, input.ClientToken, "client_token");
        if (earlier) return toVolume({ row: earlier, tags: (await tagsOf(ctx.meta.db, ctx, [earlier.volume_id])).get(earlier.volume_id) ?? new Map() });
      }
      const { row, tags } = planned;
      await insertVolume(ctx.meta.db, row);
      if (tags.length) await putTags(ctx.meta.db, ctx, [{ id: row.volume_id, type: "volume" }], tags, TAG_LIMITS.perResource);
      // CreateVolume answers with the volume as it was made: creating.
      return toVolume({ row, tags: new Map(tags.map((t) => [t.key, t.value])) });
    },
  },

  DescribeVolumes: {
    check: (_ctx, input: DescribeVolumesRequest) => checkDescribe(input, input.VolumeIds, LISTING),
    async run(ctx, input: DescribeVolumesRequest): Promise<DescribeVolumesResult> {
      const { page, nextToken } = await describePage(input, requestedIds(input.VolumeIds), LISTING, {
        read: (q) => listVolumes(ctx.meta.db, ctx, q),
        idOf: (row) => row.volume_id,
        async describe(rows) {
          const tagged = await withTags(ctx, (row: VolumeRow) => row.volume_id)(rows);
          const attachments = new Map((await attachmentsOf(ctx.meta.db, { volumeIds: rows.map((r) => r.volume_id) })).map((a) => [a.volume_id, a]));
          return tagged.map((t) => ({ ...t, attachment: attachments.get(t.row.volume_id) }));
        },
        notFound: volumeNotFound,
      });
      return { Volumes: page.map(toVolume), NextToken: nextToken };
    },
  },

  DeleteVolume: {
    async check(ctx, input: DeleteVolumeRequest) {
      const volume = await volumeOf(ctx, input.VolumeId!);
      const [attachment] = await attachmentsOf(ctx.meta.db, { volumeIds: [volume.volume_id] });
      if (attachment) throw new ApiError("VolumeInUse", `Volume ${volume.volume_id} is currently attached to ${attachment.instance_id}`);
    },
    async run(ctx, input: DeleteVolumeRequest) {
      await deleteVolume(ctx.meta.db, ctx, input.VolumeId!);
    },
  },
};
