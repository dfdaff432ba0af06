// CopySnapshot and CopyImage: a copy (in this region or from another) is the source's manifest
// under new ids in the caller's account and region; every chunk is shared, so a copy costs
// rows, not bytes. Copies are pending until the configured delay has passed.
import type { CopyImageRequest, CopyImageResult, CopySnapshotRequest, CopySnapshotResult } from "@aws-sdk/client-ec2";
import { newId } from "../../domain/ids.js";
import { isKilnRegion } from "../../domain/regions.js";
import { transition } from "../../domain/transitions.js";
import { ApiError } from "../../protocol/errors.js";
import { imageByClientToken, imageByName, insertImage, visibleImages, type ImageRow } from "../../store/meta/images.js";
import { deleteSnapshot, getSnapshot, insertSnapshotCopy, newSnapshotRow, snapshotById, type SnapshotRow } from "../../store/meta/snapshots.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import type { ActionContext, ActionTable } from "./action.js";
import { checkImageId, checkImageName, checkSnapshotId, imageNotFound, malformedName, snapshotNotFound } from "./lookups.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";

function sourceScope(ctx: ActionContext, region: string) {
  if (!isKilnRegion(region)) throw new ApiError("InvalidParameterValue", `Invalid region: ${region}`);
  return { accountId: ctx.accountId, region };
}

/** The copy of one snapshot, written; `description` as EC2 words it unless given. */
async function copySnapshot(ctx: ActionContext, source: SnapshotRow, description: string, readyAt: number): Promise<SnapshotRow> {
  const now = Date.now();
  // A copy keeps the source's size and encryption; it is of no volume, and has no token or parent.
  const copy = newSnapshotRow({
    account_id: ctx.accountId,
    region: ctx.region,
    snapshot_id: newId("snap"),
    volume_size: source.volume_size,
    encrypted: source.encrypted,
    kms_key_id: source.kms_key_id,
    ...transition<SnapshotRow["state"]>("pending", "completed", Math.max(0, readyAt - now), now),
    progress: "",
    start_time: new Date(now).toISOString(),
    description,
  });
  await insertSnapshotCopy(ctx.meta.db, copy, source.snapshot_id);
  return copy;
}

async function planSnapshotCopy(ctx: ActionContext, input: CopySnapshotRequest) {
  const scope = sourceScope(ctx, input.SourceRegion!);
  const source = await getSnapshot(ctx.meta.db, scope, checkSnapshotId(input.SourceSnapshotId!));
  if (!source) throw snapshotNotFound([input.SourceSnapshotId!]);
  if (source.state !== "completed") throw new ApiError("IncorrectState", `Snapshot is in invalid state - ${source.state}`);
  const tags = tagSpecificationsFor(input.TagSpecifications, ["snapshot"]).get("snapshot") ?? [];
  return { source, tags };
}

async function planImageCopy(ctx: ActionContext, input: CopyImageRequest) {
  // A retried CopyImage (same ClientToken) answers the image the first call made.
  const earlier = input.ClientToken ? await imageByClientToken(ctx.meta.db, ctx, input.ClientToken) : undefined;
  if (earlier) return { earlier: earlier.image_id } as const;
  const name = checkImageName(input.Name!);
  const scope = sourceScope(ctx, input.SourceRegion!);
  const [source] = await visibleImages(ctx.meta.db, scope, { ids: [checkImageId(input.SourceImageId!)] });
  if (!source) throw imageNotFound([input.SourceImageId!]);
  if (source.image.state !== "available") throw new ApiError("InvalidAMIID.Unavailable", `The image id '[${source.image.image_id}]' is not available`);
  const taken = await imageByName(ctx.meta.db, ctx, name);
  if (taken) throw new ApiError("InvalidAMIName.Duplicate", `AMI name ${name} is already in use by AMI ${taken.image_id}`);
  const tags = tagSpecificationsFor(input.TagSpecifications, ["image", "snapshot"]);
  return { name, source, tags };
}

export const copyActions: ActionTable = {
  CopySnapshot: {
    check: (ctx, input: CopySnapshotRequest) => planSnapshotCopy(ctx, input),
    async run(ctx, input: CopySnapshotRequest, planned: Awaited<ReturnType<typeof planSnapshotCopy>>): Promise<CopySnapshotResult> {
      const { source, tags } = planned;
      const copy = await copySnapshot(
        ctx,
        source,
        input.Description ?? `[Copied ${source.snapshot_id} from ${input.SourceRegion}]`,
        Date.now() + ctx.config.stateDelayMs,
      );
      if (tags.length) await putTags(ctx.meta.db, ctx, [{ id: copy.snapshot_id, type: "snapshot" }], tags, TAG_LIMITS.perResource);
      return { SnapshotId: copy.snapshot_id, Tags: tags.map((t) => ({ Key: t.key, Value: t.value })) };
    },
  },

  CopyImage: {
    parameterErrors: { Name: malformedName },
    check: (ctx, input: CopyImageRequest) => planImageCopy(ctx, input),
    async run(ctx, input: CopyImageRequest, planned: Awaited<ReturnType<typeof planImageCopy>>): Promise<CopyImageResult> {
      if ("earlier" in planned) return { ImageId: planned.earlier };
      const { name, source, tags } = planned;
      const readyAt = Date.now() + ctx.config.stateDelayMs;
      const imageId = newId("ami");
      const copies = new Map<string, SnapshotRow>();
      const devices = [];
      for (const device of source.devices) {
        if (!device.snapshot_id) {
          devices.push(device);
          continue;
        }
        let copy = copies.get(device.snapshot_id);
        if (!copy) {
          const original = (await snapshotById(ctx.meta.db, device.snapshot_id))!;
          copy = await copySnapshot(
            ctx,
            original,
            `Copied for DestinationAmi ${imageId} from SourceAmi ${source.image.image_id} for SourceSnapshot ${device.snapshot_id}`,
            readyAt,
          );
          copies.set(device.snapshot_id, copy);
        }
        devices.push({ ...device, snapshot_id: copy.snapshot_id });
      }
      const now = Date.now();
      const image: ImageRow = {
        ...source.image,
        account_id: ctx.accountId,
        region: ctx.region,
        image_id: imageId,
        name,
        description: input.Description ?? source.image.description,
        ...transition<ImageRow["state"]>("pending", "available", Math.max(0, readyAt - now), now),
        creation_date: new Date(now).toISOString(),
        deprecation_time: null,
        public: 0,
        owner_alias: null,
        client_token: input.ClientToken ?? null,
      };
      if (!(await insertImage(ctx.meta.db, { image, devices }))) {
        for (const copy of copies.values()) await deleteSnapshot(ctx.meta.db, ctx, copy.snapshot_id);
        throw new ApiError("InvalidAMIName.Duplicate", `AMI name ${name} is already in use`);
      }
      const imageTags = [...(tags.get("image") ?? [])];
      // CopyImageTags: the source's user tags, when the caller owns the source.
      if (input.CopyImageTags && source.image.account_id === ctx.accountId) {
        const sourceTags = (await tagsOf(ctx.meta.db, { accountId: ctx.accountId, region: source.image.region }, [source.image.image_id])).get(
          source.image.image_id,
        );
        for (const [key, value] of sourceTags ?? []) if (!imageTags.some((t) => t.key === key)) imageTags.push({ key, value });
      }
      if (imageTags.length) await putTags(ctx.meta.db, ctx, [{ id: imageId, type: "image" }], imageTags, TAG_LIMITS.perResource);
      const snapshotTags = tags.get("snapshot") ?? [];
      if (snapshotTags.length && copies.size)
        await putTags(
          ctx.meta.db,
          ctx,
          [...copies.values()].map((c) => ({ id: c.snapshot_id, type: "snapshot" })),
          snapshotTags,
          TAG_LIMITS.perResource,
        );
      return { ImageId: imageId };
    },
  },
};
