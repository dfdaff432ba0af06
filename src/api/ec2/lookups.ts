// The EC2 vocabulary every action family shares: id checks, the *NotFound errors, and the
// lookups of a resource the caller may see or owns. It imports no action file, so any family
// can use it without importing another family.
import type { ActionContext } from "./action.js";
import { uniqueIds } from "../../domain/ids.js";
import { ApiError } from "../../protocol/errors.js";
import { visibleImages, type ImageRecord } from "../../store/meta/images.js";
import { listInstances, type InstanceRecord } from "../../store/meta/instances.js";
import { getVolume, type VolumeRow } from "../../store/meta/volumes.js";
import { getBucket } from "../../store/meta/buckets.js";
import { listKeyPairs, type KeyPairRow } from "../../store/meta/key-pairs.js";
import { defaultVpc, ensureDefaultNetwork, listSubnets, listVpcs, type SubnetRow, type VpcRow } from "../../store/meta/network.js";
import { listSecurityGroups, type SecurityGroupRow } from "../../store/meta/security-groups.js";
import { zonesOf } from "../../domain/regions.js";
import { missingIds, requireIds } from "./listing.js";

const IMAGE_ID = /^ami-([0-9a-f]{8}|[0-9a-f]{17})$/;
const IMAGE_NAME = /^[a-zA-Z0-9()[\] ./\-'@_]{3,128}$/;

export function checkImageId(id: string): string {
  if (!IMAGE_ID.test(id)) throw new ApiError("InvalidAMIID.Malformed", `Invalid id: "${id}" (expecting "ami-...")`);
  return id;
}

export const malformedName = () =>
  new ApiError(
    "InvalidAMIName.Malformed",
    "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, spaces, '(', ')', '[', ']', '.', '/', '-', ''', '@' and '_'",
  );

export function checkImageName(name: string): string {
  if (!IMAGE_NAME.test(name)) throw malformedName();
  return name;
}

export const imageNotFound = (ids: readonly string[]) => new ApiError("InvalidAMIID.NotFound", `The image id '[${ids.join(", ")}]' does not exist`);

/** An image the caller may see, or InvalidAMIID.NotFound. */
export async function visibleImage(ctx: ActionContext, id: string): Promise<ImageRecord> {
  const [record] = await visibleImages(ctx.meta.db, ctx, { ids: [checkImageId(id)] });
  if (!record) throw imageNotFound([id]);
  return record;
}

/** The caller's own image, or NotFound (not visible) / AuthFailure (someone else's). */
export async function ownImage(ctx: ActionContext, id: string): Promise<ImageRecord> {
  const record = await visibleImage(ctx, id);
  if (record.image.account_id !== ctx.accountId) throw new ApiError("AuthFailure", `Not authorized for image:${id}`);
  return record;
}

const SNAPSHOT_ID = /^snap-([0-9a-f]{8}|[0-9a-f]{17})$/;

export function checkSnapshotId(id: string): string {
  if (!SNAPSHOT_ID.test(id)) throw new ApiError("InvalidSnapshotID.Malformed", `Invalid id: "${id}" (expecting "snap-...")`);
  return id;
}

export const snapshotNotFound = (ids: readonly string[]) =>
  new ApiError("InvalidSnapshot.NotFound", `The snapshot${ids.length > 1 ? "s" : ""} '${ids.join("', '")}' ${ids.length > 1 ? "do" : "does"} not exist.`);

const VOLUME_ID = /^vol-([0-9a-f]{8}|[0-9a-f]{17})$/;

export function checkVolumeId(id: string): string {
  if (!VOLUME_ID.test(id)) throw new ApiError("InvalidVolumeID.Malformed", `Invalid id: "${id}" (expecting "vol-...")`);
  return id;
}

export const volumeNotFound = (ids: readonly string[]) =>
  new ApiError("InvalidVolume.NotFound", `The volume${ids.length > 1 ? "s" : ""} '${ids.join("', '")}' ${ids.length > 1 ? "do" : "does"} not exist.`);

export async function volumeOf(ctx: ActionContext, id: string): Promise<VolumeRow> {
  const volume = await getVolume(ctx.meta.db, ctx, checkVolumeId(id));
  if (!volume) throw volumeNotFound([id]);
  return volume;
}

const INSTANCE_ID = /^i-([0-9a-f]{8}|[0-9a-f]{17})$/;

export function checkInstanceId(id: string): string {
  if (!INSTANCE_ID.test(id)) throw new ApiError("InvalidInstanceID.Malformed", `Invalid id: "${id}"`);
  return id;
}

/** The caller's instances by id, every one of them (each once), or InvalidInstanceID.NotFound. */
export const instanceNotFound = (ids: readonly string[]) =>
  new ApiError("InvalidInstanceID.NotFound", `The instance ID${ids.length > 1 ? "s" : ""} '${ids.join("', '")}' ${ids.length > 1 ? "do" : "does"} not exist`);

export async function instancesOf(ctx: ActionContext, requested: readonly string[]): Promise<InstanceRecord[]> {
  const ids = uniqueIds(requested);
  ids.forEach(checkInstanceId);
  const found = new Map((await listInstances(ctx.meta.db, ctx, { ids })).map((r) => [r.row.instance_id, r]));
  const missing = ids.filter((id) => !found.has(id));
  if (missing.length) throw instanceNotFound(missing);
  return ids.map((id) => found.get(id)!);
}

/** The caller's network in this region, its default part made if this is the first use. */
export async function network(ctx: ActionContext): Promise<void> {
  await ensureDefaultNetwork(
    ctx.meta.db,
    ctx,
    zonesOf(ctx.region).map((z) => z.zoneName),
  );
}

const notFound =
  (
    code:
      | "InvalidVpcID.NotFound"
      | "InvalidSubnetID.NotFound"
      | "InvalidInternetGatewayID.NotFound"
      | "InvalidRouteTableID.NotFound"
      | "InvalidNetworkInterfaceID.NotFound",
    noun: string,
  ) =>
  (ids: readonly string[]) =>
    new ApiError(code, `The ${noun} ID${ids.length > 1 ? "s" : ""} '${ids.join("', '")}' ${ids.length > 1 ? "do" : "does"} not exist`);
export const vpcNotFound = notFound("InvalidVpcID.NotFound", "vpc");
export const subnetNotFound = notFound("InvalidSubnetID.NotFound", "subnet");
export const gatewayNotFound = notFound("InvalidInternetGatewayID.NotFound", "internetGateway");
export const routeTableNotFound = notFound("InvalidRouteTableID.NotFound", "routeTable");
export const interfaceNotFound = notFound("InvalidNetworkInterfaceID.NotFound", "networkInterface");

export async function vpcOf(ctx: ActionContext, vpcId: string): Promise<VpcRow> {
  await network(ctx);
  const [vpc] = await listVpcs(ctx.meta.db, ctx, { ids: [vpcId] });
  if (!vpc) throw vpcNotFound([vpcId]);
  return vpc;
}

export async function subnetOf(ctx: ActionContext, subnetId: string): Promise<SubnetRow> {
  await network(ctx);
  const [subnet] = await listSubnets(ctx.meta.db, ctx, { ids: [subnetId] });
  if (!subnet) throw subnetNotFound([subnetId]);
  return subnet;
}

/** The default VPC, or the error EC2 gives when an action needs one and the account has none. */
export async function requireDefaultVpc(ctx: ActionContext): Promise<VpcRow> {
  await network(ctx);
  const vpc = await defaultVpc(ctx.meta.db, ctx);
  if (!vpc) throw new ApiError("VPCIdNotSpecified", "No default VPC for this user");
  return vpc;
}

const GROUP_ID = /^sg-([0-9a-f]{8}|[0-9a-f]{17})$/;

export const groupNotFound = (what: readonly string[], where = "") =>
  new ApiError(
    "InvalidGroup.NotFound",
    `The security group${what.length > 1 ? "s" : ""} '${what.join("', '")}' ${what.length > 1 ? "do" : "does"} not exist${where}`,
  );

export const ruleNotFound = (ids: readonly string[]) =>
  new ApiError("InvalidSecurityGroupRuleId.NotFound", `The security group rule ID '${ids.join("', '")}' does not exist`);

export function checkGroupId(id: string): string {
  if (!GROUP_ID.test(id)) throw new ApiError("InvalidGroupId.Malformed", `Invalid id: "${id}" (expecting "sg-...")`);
  return id;
}

/** The caller's groups by id, every one of them (each once), or InvalidGroup.NotFound. */
export async function groupsById(ctx: ActionContext, requested: readonly string[]): Promise<SecurityGroupRow[]> {
  const ids = uniqueIds(requested);
  ids.forEach(checkGroupId);
  await network(ctx);
  const rows = await listSecurityGroups(ctx.meta.db, ctx, { ids });
  requireIds(ids, rows, (r) => r.group_id, groupNotFound);
  const byId = new Map(rows.map((r) => [r.group_id, r]));
  return ids.map((id) => byId.get(id)!);
}

/** Groups named in the default VPC, each once (names alone mean the default VPC, as in EC2). */
export async function groupsByName(ctx: ActionContext, requested: readonly string[]): Promise<SecurityGroupRow[]> {
  const names = uniqueIds(requested);
  const vpc = await requireDefaultVpc(ctx);
  const rows = await listSecurityGroups(ctx.meta.db, ctx, { names, vpcId: vpc.vpc_id });
  const missing = missingIds(names, rows, (r) => r.group_name);
  if (missing.length) throw groupNotFound(missing, ` in default VPC '${vpc.vpc_id}'`);
  const byName = new Map(rows.map((r) => [r.group_name, r]));
  return names.map((name) => byName.get(name)!);
}

export const keyPairNotFound = (what: readonly string[]) =>
  new ApiError("InvalidKeyPair.NotFound", `The key pair${what.length > 1 ? "s" : ""} '${what.join("', '")}' ${what.length > 1 ? "do" : "does"} not exist`);

/** The caller's key pair named `name` (RunInstances' KeyName), or InvalidKeyPair.NotFound. */
export async function keyPairNamed(ctx: ActionContext, name: string): Promise<KeyPairRow> {
  const [row] = await listKeyPairs(ctx.meta.db, ctx, { names: [name] });
  if (!row) throw keyPairNotFound([name]);
  return row;
}

/** A bucket the caller owns in this region, or a clear InvalidParameterValue. */
export async function bucketFor(ctx: ActionContext, name: string) {
  const bucket = await getBucket(ctx.meta.db, name);
  if (!bucket || bucket.account_id !== ctx.accountId) {
    throw new ApiError("InvalidParameterValue", `The bucket ${name} does not exist, or you do not have access to it.`);
  }
  if (bucket.region !== ctx.region) {
    throw new ApiError("InvalidParameterValue", `The bucket ${name} is in ${bucket.region}; it must be in ${ctx.region}, the region of the request.`);
  }
  return bucket;
}
