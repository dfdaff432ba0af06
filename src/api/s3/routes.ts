// Which S3 operation a request is: by what it addresses (the service, a bucket, an object), its
// method, its subresource (?uploads, ?tagging, …) and a header or two. Subresources Kiln does
// not serve answer NotImplemented rather than being mistaken for a listing or a read.
import { ApiError } from "../../protocol/errors.js";
import { parseS3Xml, s3Xml } from "../../protocol/s3/wire.js";
import { bucketsOf, createBucket, headBucket, removeBucket } from "./buckets.js";
import { listObjectsV1, listObjectsV2 } from "./listing.js";
import { abortMultipartUpload, completeMultipartUpload, createMultipartUpload, listMultipartUploads, listParts, uploadPart } from "./multipart.js";
import { copyObject, deleteObject, deleteObjects, deleteObjectTagging, getObjectData, getObjectTagging, putObject, putObjectTagging } from "./objects.js";
import { header, type S3Request, type S3Response } from "./request.js";
import { ownerOf } from "./owner.js";

type Target = "service" | "bucket" | "object";

interface Route {
  action: string;
  target: Target;
  method: string;
  /** The subresource the route serves, if any. */
  subresource?: string;
  when?: (req: S3Request) => boolean;
  handle: (req: S3Request) => Promise<S3Response>;
}

/** S3's subresources: a query parameter naming one selects an operation, not a listing option. */
const SUBRESOURCES = new Set([
  "accelerate",
  "acl",
  "analytics",
  "attributes",
  "cors",
  "delete",
  "encryption",
  "intelligent-tiering",
  "inventory",
  "legal-hold",
  "lifecycle",
  "location",
  "logging",
  "metadataConfiguration",
  "metrics",
  "notification",
  "object-lock",
  "ownershipControls",
  "partNumber",
  "policy",
  "policyStatus",
  "publicAccessBlock",
  "replication",
  "requestPayment",
  "restore",
  "retention",
  "select",
  "tagging",
  "torrent",
  "uploadId",
  "uploads",
  "versioning",
  "versions",
  "website",
]);

const hasCopySource = (req: S3Request) => header(req, "x-amz-copy-source") !== undefined;

const ROUTES: Route[] = [
  { action: "ListBuckets", target: "service", method: "GET", handle: listBuckets },
  { action: "GetBucketLocation", target: "bucket", method: "GET", subresource: "location", handle: getBucketLocation },
  { action: "ListMultipartUploads", target: "bucket", method: "GET", subresource: "uploads", handle: listMultipartUploads },
  { action: "ListObjectsV2", target: "bucket", method: "GET", when: (req) => req.query.get("list-type") === "2", handle: listObjectsV2 },
  { action: "ListObjects", target: "bucket", method: "GET", handle: listObjectsV1 },
  { action: "CreateBucket", target: "bucket", method: "PUT", handle: putBucket },
  {
    action: "HeadBucket",
    target: "bucket",
    method: "HEAD",
    handle: async (req) => ({ headers: { "x-amz-bucket-region": (await headBucket(req.ctx, req.bucket)).region } }),
  },
  {
    action: "DeleteBucket",
    target: "bucket",
    method: "DELETE",
    handle: async (req) => {
      await removeBucket(req.ctx, req.bucket);
      return { status: 204 };
    },
  },
  { action: "DeleteObjects", target: "bucket", method: "POST", subresource: "delete", handle: deleteObjects },
  { action: "GetObjectTagging", target: "object", method: "GET", subresource: "tagging", handle: getObjectTagging },
  { action: "PutObjectTagging", target: "object", method: "PUT", subresource: "tagging", handle: putObjectTagging },
  { action: "DeleteObjectTagging", target: "object", method: "DELETE", subresource: "tagging", handle: deleteObjectTagging },
  { action: "CreateMultipartUpload", target: "object", method: "POST", subresource: "uploads", handle: createMultipartUpload },
  { action: "UploadPartCopy", target: "object", method: "PUT", subresource: "uploadId", when: hasCopySource, handle: notServed("UploadPartCopy") },
  { action: "UploadPart", target: "object", method: "PUT", subresource: "uploadId", handle: uploadPart },
  { action: "CompleteMultipartUpload", target: "object", method: "POST", subresource: "uploadId", handle: completeMultipartUpload },
  { action: "AbortMultipartUpload", target: "object", method: "DELETE", subresource: "uploadId", handle: abortMultipartUpload },
  { action: "ListParts", target: "object", method: "GET", subresource: "uploadId", handle: listParts },
  { action: "CopyObject", target: "object", method: "PUT", when: hasCopySource, handle: copyObject },
  { action: "PutObject", target: "object", method: "PUT", handle: putObject },
  { action: "GetObject", target: "object", method: "GET", handle: getObjectData },
  { action: "GetObject", target: "object", method: "GET", subresource: "partNumber", handle: getObjectData },
  { action: "HeadObject", target: "object", method: "HEAD", handle: getObjectData },
  { action: "HeadObject", target: "object", method: "HEAD", subresource: "partNumber", handle: getObjectData },
  { action: "DeleteObject", target: "object", method: "DELETE", handle: deleteObject },
];

function notServed(action: string) {
  return async (): Promise<S3Response> => {
    throw new ApiError("NotImplemented", `Kiln does not serve ${action} yet.`);
  };
}

/** The route for a request; NotImplemented (or MethodNotAllowed) when there is none. */
export function routeOf(req: Pick<S3Request, "method" | "bucket" | "key" | "query" | "headers"> & Partial<S3Request>): Route {
  const target: Target = req.bucket === "" ? "service" : req.key === "" ? "bucket" : "object";
  const subresources = [...req.query.keys()].filter((name) => SUBRESOURCES.has(name));
  // A part upload names two subresources; it is routed by uploadId.
  const chosen = subresources.includes("uploadId") ? "uploadId" : subresources[0];
  const route = ROUTES.find((r) => r.target === target && r.method === req.method && r.subresource === chosen && (!r.when || r.when(req as S3Request)));
  if (route) return route;
  if (target === "service") throw new ApiError("MethodNotAllowed", "The specified method is not allowed against this resource.");
  const what = target === "bucket" ? "on a bucket" : "on an object";
  throw new ApiError("NotImplemented", `Kiln does not serve ${req.method} ${what}${chosen ? ` with ?${chosen}` : ""} yet.`);
}

async function listBuckets(req: S3Request): Promise<S3Response> {
  const buckets = await bucketsOf(req.ctx);
  return {
    xml: s3Xml("ListAllMyBucketsResult", {
      Owner: ownerOf(req.ctx.accountId),
      Buckets: { Bucket: buckets.map((b) => ({ Name: b.name, CreationDate: b.creation_date, BucketRegion: b.region })) },
    }),
  };
}

async function getBucketLocation(req: S3Request): Promise<S3Response> {
  const { region } = await headBucket(req.ctx, req.bucket);
  // us-east-1 answers an empty constraint, as S3 does.
  return { xml: s3Xml("LocationConstraint", region === "us-east-1" ? "" : region) };
}

async function putBucket(req: S3Request): Promise<S3Response> {
  const configuration = (await parseS3Xml(await req.body())).CreateBucketConfiguration as Record<string, unknown> | undefined;
  const constraint = configuration?.LocationConstraint;
  const { location } = await createBucket(req.ctx, req.bucket, typeof constraint === "string" ? constraint : undefined);
  return { headers: { location } };
}
