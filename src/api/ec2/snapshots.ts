// DescribeSnapshots and DeleteSnapshot: EC2's view of the snapshots the block store holds.
import type { CreateSnapshotRequest, DeleteSnapshotRequest, DescribeSnapshotsRequest, DescribeSnapshotsResult, Snapshot } from "@aws-sdk/client-ec2";
import { newId, requestedIds } from "../../domain/ids.js";
import { transition } from "../../domain/transitions.js";
import { putTags } from "../../store/meta/tags.js";
import { imagesUsingSnapshot } from "../../store/meta/images.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";
import type { FilterSpec } from "../../domain/filters.js";
import { ApiError } from "../../protocol/errors.js";
import { deleteSnapshot, getSnapshot, insertSnapshotOfVolume, listSnapshots, newSnapshotRow, type SnapshotRow } from "../../store/meta/snapshots.js";
import type { ActionContext, ActionTable } from "./action.js";
import { checkSnapshotId, snapshotNotFound, volumeOf } from "./lookups.js";
import { checkDescribe, describePage, withTags } from "./listing.js";

interface Described {
  row: SnapshotRow;
  tags: ReadonlyMap<string, string>;
}

const FILTERS: FilterSpec<Described> = {
  fields: {
    description: (s: Described) => s.row.description,
    encrypted: (s: Described) => String(Boolean(s.row.encrypted)),
    "owner-id": (s: Described) => s.row.account_id,
    progress: (s: Described) => s.row.progress,
    "snapshot-id": (s: Described) => s.row.snapshot_id,
    "start-time": (s: Described) => s.row.start_time,
    status: (s: Described) => s.row.state,
    "storage-tier": () => "standard",
    "volume-id": (s: Described) => s.row.volume_id,
    "volume-size": (s: Described) => String(s.row.volume_size),
  },
  tags: (s: Described) => s.tags,
};

const LISTING = { filters: FILTERS, checkId: checkSnapshotId, idsParameter: "snapshotSet" };

function toSnapshot({ row, tags }: Described): Snapshot {
  return {
    SnapshotId: row.snapshot_id,
    VolumeId: row.volume_id,
    State: row.state,
    StartTime: new Date(row.start_time),
    Progress: row.progress,
    OwnerId: row.account_id,
    Description: row.description,
    VolumeSize: row.volume_size,
    Encrypted: Boolean(row.encrypted),
    KmsKeyId: row.kms_key_id ?? undefined,
    StorageTier: "standard",
    Tags: [...tags].map(([Key, Value]) => ({ Key, Value })),
  };
}

/** Owners the caller may name: `self`, its own account id; Kiln has no snapshots of others yet. */
function ownsAny(ctx: ActionContext, owners: readonly string[] | undefined): boolean {
  return !owners || owners.length === 0 || owners.some((o) => o === "self" || o === ctx.accountId);
}

export const snapshotActions: ActionTable = {
  CreateSnapshot: {
    async check(ctx, input: CreateSnapshotRequest) {
      await volumeOf(ctx, input.VolumeId!);
      tagSpecificationsFor(input.TagSpecifications, ["snapshot"]);
    },
    async run(ctx, input: CreateSnapshotRequest): Promise<Snapshot> {
      const volume = await volumeOf(ctx, input.VolumeId!);
      const tags = tagSpecificationsFor(input.TagSpecifications, ["snapshot"]).get("snapshot") ?? [];
      const now = Date.now();
      const row = newSnapshotRow({
        account_id: ctx.accountId,
        region: ctx.region,
        snapshot_id: newId("snap"),
        volume_id: volume.volume_id,
        volume_size: volume.size,
        ...transition<SnapshotRow["state"]>("pending", "completed", ctx.config.stateDelayMs, now),
        progress: "",
        start_time: new Date(now).toISOString(),
        description: input.Description ?? "",
        encrypted: volume.encrypted,
        kms_key_id: volume.kms_key_id,
      });
      // The volume's manifest is copied now: the snapshot is its point in time, whenever it completes.
      // A running guest's writes held for its next flush are in it (crash-consistent, as on EC2).
      await ctx.machines.flushVolumes([volume.volume_id]);
      await insertSnapshotOfVolume(ctx.meta.db, row);
      if (tags.length) await putTags(ctx.meta.db, ctx, [{ id: row.snapshot_id, type: "snapshot" }], tags, TAG_LIMITS.perResource);
      return toSnapshot({ row, tags: new Map(tags.map((t) => [t.key, t.value])) });
    },
  },

  DescribeSnapshots: {
    check: (_ctx, input: DescribeSnapshotsRequest) => checkDescribe(input, input.SnapshotIds, LISTING),
    async run(ctx, input: DescribeSnapshotsRequest): Promise<DescribeSnapshotsResult> {
      // Only the caller's own snapshots are kept: OwnerIds that do not name it find none.
      const owned = ownsAny(ctx, input.OwnerIds);
      const { page, nextToken } = await describePage(input, requestedIds(input.SnapshotIds), LISTING, {
        read: async (q) => (owned ? listSnapshots(ctx.meta.db, ctx, q) : []),
        idOf: (row) => row.snapshot_id,
        describe: withTags(ctx, (row) => row.snapshot_id),
        notFound: snapshotNotFound,
      });
      return { Snapshots: page.map(toSnapshot), NextToken: nextToken };
    },
  },

  DeleteSnapshot: {
    async check(ctx, input: DeleteSnapshotRequest) {
      const id = checkSnapshotId(input.SnapshotId!);
      if (!(await getSnapshot(ctx.meta.db, ctx, id))) throw snapshotNotFound([id]);
      const [image] = await imagesUsingSnapshot(ctx.meta.db, id);
      if (image) throw new ApiError("InvalidSnapshot.InUse", `The snapshot ${id} is currently in use by ${image}`);
    },
    async run(ctx, input: DeleteSnapshotRequest) {
      // The chunks stay until collection: other snapshots and volumes may share them.
      await deleteSnapshot(ctx.meta.db, ctx, input.SnapshotId!);
    },
  },
};
