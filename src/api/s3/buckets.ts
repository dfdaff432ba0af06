// S3 buckets: CreateBucket, HeadBucket, DeleteBucket, ListBuckets. Names are global, as in S3:
// a name another account holds is BucketAlreadyExists; one's own, BucketAlreadyOwnedByYou
// (outside us-east-1, where S3 answers 200 for it, as Kiln does).
import { ApiError } from "../../protocol/errors.js";
import { deleteBucket, getBucket, insertBucket, listBuckets, type BucketRow } from "../../store/meta/buckets.js";
import { bucketHasObjects } from "../../store/meta/objects.js";
import type { S3Context } from "./request.js";
import { isKilnRegion } from "../../domain/regions.js";

// S3's rules for new bucket names: 3–63 characters of lowercase letters, digits, dots and
// hyphens, beginning and ending with a letter or digit, no two adjacent dots, not an IP address,
// and none of the prefixes and suffixes S3 reserves.
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const IP_ADDRESS = /^\d+\.\d+\.\d+\.\d+$/;
const RESERVED = [/^xn--/, /^sthree-/, /^amzn-s3-demo-/, /-s3alias$/, /--ol-s3$/, /\.mrap$/, /--x-s3$/, /--table-s3$/];

export function checkBucketName(name: string): string {
  if (!BUCKET_NAME.test(name) || name.includes("..") || IP_ADDRESS.test(name) || RESERVED.some((r) => r.test(name))) {
    throw new ApiError("InvalidBucketName", "The specified bucket is not valid.");
  }
  return name;
}

export const noSuchBucket = () => new ApiError("NoSuchBucket", "The specified bucket does not exist");

/** A bucket the caller owns: NoSuchBucket when there is none, AccessDenied when it is another account's. */
export async function ownBucket(ctx: S3Context, name: string): Promise<BucketRow> {
  const bucket = await getBucket(ctx.meta.db, name);
  if (!bucket) throw noSuchBucket();
  if (bucket.account_id !== ctx.accountId) throw new ApiError("AccessDenied", "Access Denied");
  return bucket;
}

/** CreateBucket; `locationConstraint` from CreateBucketConfiguration, if the body had one. */
export async function createBucket(ctx: S3Context, name: string, locationConstraint: string | undefined): Promise<{ location: string }> {
  checkBucketName(name);
  const region = locationConstraint || "us-east-1";
  if (!isKilnRegion(region)) throw new ApiError("InvalidLocationConstraint", "The specified location-constraint is not valid");
  // Outside us-east-1, S3 wants the constraint to name the region the request was signed for.
  if (region !== ctx.region && ctx.region !== "us-east-1") {
    throw new ApiError(
      "IllegalLocationConstraintException",
      `The ${region} location constraint is incompatible for the region specific endpoint this request was sent to.`,
    );
  }
  const created = await insertBucket(ctx.meta.db, { name, account_id: ctx.accountId, region, creation_date: new Date().toISOString() });
  if (!created) {
    const existing = (await getBucket(ctx.meta.db, name))!;
    if (existing.account_id !== ctx.accountId)
      throw new ApiError(
        "BucketAlreadyExists",
        "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.",
      );
    if (existing.region !== "us-east-1")
      throw new ApiError("BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.");
  }
  return { location: `/${name}` };
}

export async function headBucket(ctx: S3Context, name: string): Promise<{ region: string }> {
  const bucket = await ownBucket(ctx, name);
  return { region: bucket.region };
}

export async function removeBucket(ctx: S3Context, name: string): Promise<void> {
  await ownBucket(ctx, name);
  if (await bucketHasObjects(ctx.meta.db, name)) throw new ApiError("BucketNotEmpty", "The bucket you tried to delete is not empty");
  await deleteBucket(ctx.meta.db, name);
}

export async function bucketsOf(ctx: S3Context): Promise<BucketRow[]> {
  return listBuckets(ctx.meta.db, ctx.accountId);
}
