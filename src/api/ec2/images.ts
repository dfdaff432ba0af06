// RegisterImage, DescribeImages, DeregisterImage. An EBS-backed image is a list of block device
// mappings over snapshots; who may see it is its owner, everyone when public, and the accounts
// its launch permissions name.
import type {
  DeregisterImageRequest,
  DeregisterImageResult,
  DescribeImagesRequest,
  DescribeImagesResult,
  RegisterImageRequest,
  RegisterImageResult,
} from "@aws-sdk/client-ec2";
import type { FilterSpec } from "../../domain/filters.js";
import { newId, requestedIds } from "../../domain/ids.js";
import { transition } from "../../domain/transitions.js";
import { ApiError } from "../../protocol/errors.js";
import {
  deregisterImage,
  insertImage,
  imageByName,
  imagesUsingSnapshot,
  launchPermissionsOf,
  newImageRow,
  visibleImages,
  type ImageQuery,
  type ImageRecord,
  type ImageRow,
} from "../../store/meta/images.js";
import { deleteSnapshot, getSnapshot } from "../../store/meta/snapshots.js";
import { putTags, tagsOf } from "../../store/meta/tags.js";
import type { ActionContext, ActionTable } from "./action.js";
import { blockDevicesFrom, platformDetailsOf, toImage, uefiDataProblem, usageOperationOf } from "./image-records.js";
import { checkImageId, checkImageName, imageNotFound, malformedName, ownImage } from "./lookups.js";
import { checkDescribe, describePage } from "./listing.js";
import { TAG_LIMITS, tagSpecificationsFor } from "./tag-specifications.js";

async function planRegistration(ctx: ActionContext, input: RegisterImageRequest) {
  const name = checkImageName(input.Name!);
  if (input.ImageLocation) throw new ApiError("UnsupportedOperation", "Kiln registers EBS-backed images only: give BlockDeviceMappings, not ImageLocation.");
  if (!input.BlockDeviceMappings?.length) throw new ApiError("MissingParameter", "The request must contain the parameter BlockDeviceMapping");
  if (!input.RootDeviceName) throw new ApiError("MissingParameter", "The request must contain the parameter rootDeviceName");
  const devices = await blockDevicesFrom(ctx, input.BlockDeviceMappings);
  const root = devices.find((d) => d.device_name === input.RootDeviceName);
  if (!root?.snapshot_id) {
    throw new ApiError("InvalidBlockDeviceMapping", `The root device ${input.RootDeviceName} must be mapped to an EBS snapshot.`);
  }
  const tags = tagSpecificationsFor(input.TagSpecifications, ["image"]).get("image") ?? [];
  const uefiProblem = input.UefiData === undefined ? undefined : await uefiDataProblem(input.UefiData);
  if (uefiProblem) throw new ApiError("InvalidParameterValue", `Invalid value for UefiData: ${uefiProblem}.`);
  return { name, devices, tags };
}

const nameTaken = (name: string, imageId: string) => new ApiError("InvalidAMIName.Duplicate", `AMI name ${name} is already in use by AMI ${imageId}`);

interface Described {
  record: ImageRecord;
  tags: ReadonlyMap<string, string>;
}

const devicesOf = (d: Described) => d.record.devices;
const FILTERS: FilterSpec<Described> = {
  fields: {
    architecture: (d: Described) => d.record.image.architecture,
    "block-device-mapping.delete-on-termination": (d: Described) =>
      devicesOf(d)
        .filter((x) => x.delete_on_termination !== null)
        .map((x) => String(Boolean(x.delete_on_termination))),
    "block-device-mapping.device-name": (d: Described) => devicesOf(d).map((x) => x.device_name),
    "block-device-mapping.snapshot-id": (d: Described) => devicesOf(d).flatMap((x) => (x.snapshot_id ? [x.snapshot_id] : [])),
    "block-device-mapping.volume-size": (d: Described) => devicesOf(d).flatMap((x) => (x.volume_size === null ? [] : [String(x.volume_size)])),
    "block-device-mapping.volume-type": (d: Described) => devicesOf(d).flatMap((x) => (x.volume_type ? [x.volume_type] : [])),
    "block-device-mapping.encrypted": (d: Described) =>
      devicesOf(d)
        .filter((x) => x.encrypted !== null)
        .map((x) => String(Boolean(x.encrypted))),
    "creation-date": (d: Described) => d.record.image.creation_date,
    description: (d: Described) => d.record.image.description,
    "ena-support": (d: Described) => String(Boolean(d.record.image.ena_support)),
    "free-tier-eligible": () => "false",
    hypervisor: () => "xen",
    "image-id": (d: Described) => d.record.image.image_id,
    "image-type": () => "machine",
    "is-public": (d: Described) => String(Boolean(d.record.image.public)),
    "kernel-id": (d: Described) => d.record.image.kernel_id ?? undefined,
    "manifest-location": (d: Described) => `${d.record.image.owner_alias ?? d.record.image.account_id}/${d.record.image.name}`,
    name: (d: Described) => d.record.image.name,
    "owner-alias": (d: Described) => d.record.image.owner_alias ?? undefined,
    "owner-id": (d: Described) => d.record.image.account_id,
    platform: (d: Described) => d.record.image.platform ?? undefined,
    "platform-details": (d: Described) => platformDetailsOf(d.record.image),
    "product-code": () => undefined,
    "product-code.type": () => undefined,
    "ramdisk-id": (d: Described) => d.record.image.ramdisk_id ?? undefined,
    "root-device-name": (d: Described) => d.record.image.root_device_name,
    "root-device-type": (d: Described) => d.record.image.root_device_type,
    "source-image-id": () => undefined,
    "source-image-region": () => undefined,
    "source-instance-id": (d: Described) => d.record.image.source_instance_id ?? undefined,
    state: (d: Described) => d.record.image.state,
    "state-reason-code": (d: Described) => d.record.image.state_reason_code ?? undefined,
    "state-reason-message": (d: Described) => d.record.image.state_reason_message ?? undefined,
    "sriov-net-support": (d: Described) => d.record.image.sriov_net_support ?? undefined,
    "usage-operation": (d: Described) => usageOperationOf(d.record.image),
    "virtualization-type": (d: Described) => d.record.image.virtualization_type,
  },
  tags: (d: Described) => d.tags,
};

const LISTING = { filters: FILTERS, checkId: checkImageId, idsParameter: "imagesSet" };

/**
 * What of a DescribeImages request SQL can narrow: owners, and names (exact, or the literal
 * prefix before a wildcard). Everything is checked again in full on what SQL returns.
 */
function sqlConstraints(ctx: ActionContext, input: DescribeImagesRequest): ImageQuery {
  const query: ImageQuery = {};
  if (input.Owners?.length) {
    query.ownerAccounts = input.Owners.flatMap((o) => (o === "self" ? [ctx.accountId] : /^[0-9]{12}$/.test(o) ? [o] : []));
    query.ownerAliases = input.Owners.filter((o) => !(o === "self" || /^[0-9]{12}$/.test(o)));
  }
  const names = input.Filters?.filter((f) => f.Name === "name");
  if (names?.length === 1) {
    const values = names[0]!.Values ?? [];
    const prefixes = values.map((v) => /^[^*?\\]*/.exec(v)![0]);
    if (values.every((v, i) => prefixes[i] === v)) query.names = values;
    else if (values.length > 0 && prefixes.every((p) => p.length > 0)) query.namePrefixes = prefixes;
  }
  return query;
}

function grantsOf(ctx: ActionContext, records: readonly ImageRecord[]): Promise<Map<string, string[]>> {
  return launchPermissionsOf(
    ctx.meta.db,
    records.map((r) => r.image.image_id),
  );
}

/** DescribeImages' Owners: self, amazon, aws-marketplace, or account ids. */
function ownerMatcher(ctx: ActionContext, owners: readonly string[] | undefined): (image: ImageRow) => boolean {
  if (!owners?.length) return () => true;
  for (const owner of owners) {
    if (!["self", "amazon", "aws-marketplace", "aws-backup-vault"].includes(owner) && !/^[0-9]{12}$/.test(owner)) {
      throw new ApiError("InvalidParameterValue", `Invalid owner: '${owner}'. Owners are self, amazon, aws-marketplace or 12-digit account ids.`);
    }
  }
  return (image) =>
    owners.some((o) => (o === "self" ? image.account_id === ctx.accountId : /^[0-9]{12}$/.test(o) ? image.account_id === o : image.owner_alias === o));
}

/** DescribeImages' ExecutableUsers: explicit launch permissions (all = public). */
function executableMatcher(ctx: ActionContext, users: readonly string[] | undefined, grants: Map<string, string[]>): (image: ImageRow) => boolean {
  if (!users?.length) return () => true;
  return (image) => users.some((u) => (u === "all" ? Boolean(image.public) : (grants.get(image.image_id) ?? []).includes(u === "self" ? ctx.accountId : u)));
}

export const imageActions: ActionTable = {
  RegisterImage: {
    parameterErrors: { Name: malformedName },
    async check(ctx, input: RegisterImageRequest) {
      const planned = await planRegistration(ctx, input);
      const taken = await imageByName(ctx.meta.db, ctx, planned.name);
      if (taken) throw nameTaken(planned.name, taken.image_id);
      return planned;
    },
    async run(ctx, input: RegisterImageRequest, planned: Awaited<ReturnType<typeof planRegistration>>): Promise<RegisterImageResult> {
      const { name, devices, tags } = planned;
      const now = Date.now();
      // EC2's defaults for a registration that does not say: i386, paravirtual.
      const image = newImageRow({
        account_id: ctx.accountId,
        region: ctx.region,
        image_id: newId("ami"),
        name,
        description: input.Description ?? "",
        ...transition<ImageRow["state"]>("pending", "available", ctx.config.stateDelayMs, now),
        architecture: input.Architecture ?? "i386",
        virtualization_type: input.VirtualizationType ?? "paravirtual",
        root_device_name: input.RootDeviceName!,
        ena_support: input.EnaSupport ? 1 : 0,
        sriov_net_support: input.SriovNetSupport ?? null,
        boot_mode: input.BootMode ?? null,
        tpm_support: input.TpmSupport ?? null,
        imds_support: input.ImdsSupport ?? null,
        uefi_data: input.UefiData || null,
        creation_date: new Date(now).toISOString(),
        kernel_id: input.KernelId ?? null,
        ramdisk_id: input.RamdiskId ?? null,
      });
      if (!(await insertImage(ctx.meta.db, { image, devices }))) {
        throw nameTaken(name, (await imageByName(ctx.meta.db, ctx, name))!.image_id);
      }
      if (tags.length) await putTags(ctx.meta.db, ctx, [{ id: image.image_id, type: "image" }], tags, TAG_LIMITS.perResource);
      return { ImageId: image.image_id };
    },
  },

  DescribeImages: {
    check(ctx, input: DescribeImagesRequest) {
      checkDescribe(input, input.ImageIds, LISTING);
      ownerMatcher(ctx, input.Owners);
    },
    async run(ctx, input: DescribeImagesRequest): Promise<DescribeImagesResult> {
      const ids = requestedIds(input.ImageIds);
      const byOwner = ownerMatcher(ctx, input.Owners);
      const now = new Date().toISOString();
      // Deprecated images show to their owner, by id, or when asked for.
      const shown = (image: ImageRow) =>
        !image.deprecation_time || image.deprecation_time > now || input.IncludeDeprecated || ids !== undefined || image.account_id === ctx.accountId;
      const constraints = sqlConstraints(ctx, input);
      const { page, nextToken } = await describePage(input, ids, LISTING, {
        read: (q) => visibleImages(ctx.meta.db, ctx, { ...constraints, ...q }),
        idOf: (record) => record.image.image_id,
        async describe(records) {
          const grants = input.ExecutableUsers?.length ? await grantsOf(ctx, records) : new Map<string, string[]>();
          const byUser = executableMatcher(ctx, input.ExecutableUsers, grants);
          // Tags are the owner's: another account's image shows none.
          const tags = await tagsOf(
            ctx.meta.db,
            ctx,
            records.filter((r) => r.image.account_id === ctx.accountId).map((r) => r.image.image_id),
          );
          return records.map((record) =>
            byOwner(record.image) && byUser(record.image) && shown(record.image)
              ? { record, tags: tags.get(record.image.image_id) ?? new Map<string, string>() }
              : undefined,
          );
        },
        notFound: imageNotFound,
      });
      return { Images: page.map((d) => toImage(d.record, d.tags)), NextToken: nextToken };
    },
  },

  DeregisterImage: {
    async check(ctx, input: DeregisterImageRequest) {
      await ownImage(ctx, input.ImageId!);
    },
    async run(ctx, input: DeregisterImageRequest): Promise<DeregisterImageResult> {
      const { image, devices } = await ownImage(ctx, input.ImageId!);
      await deregisterImage(ctx.meta.db, ctx, image.image_id);
      if (!input.DeleteAssociatedSnapshots) return { Return: true };
      const results = [];
      for (const snapshotId of new Set(devices.flatMap((d) => (d.snapshot_id ? [d.snapshot_id] : [])))) {
        // Not the caller's, or still used by another image: left alone, as EC2 does.
        const snapshot = await getSnapshot(ctx.meta.db, ctx, snapshotId);
        if (!snapshot || (await imagesUsingSnapshot(ctx.meta.db, snapshotId)).length > 0) {
          results.push({ SnapshotId: snapshotId, ReturnCode: "skipped" as const });
          continue;
        }
        await deleteSnapshot(ctx.meta.db, ctx, snapshotId);
        results.push({ SnapshotId: snapshotId, ReturnCode: "success" as const });
      }
      return { Return: true, DeleteSnapshotResults: results };
    },
  },
};
