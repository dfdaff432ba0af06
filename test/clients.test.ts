// The AWS CLI and boto3 from this machine against Kiln: signed calls, a presigned URL and the
// parsing of EC2 errors by clients that are not the JavaScript SDK.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { convertDisk, makeDataDisk, makeLinuxDisk } from "./helpers/disks.js";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";
import { AWS_CLIENT_ENV, scratch } from "./helpers/tools.js";

const run = promisify(execFile);
let kiln: TestKiln;
let env: NodeJS.ProcessEnv;

before(async () => {
  kiln = await startTestKiln();
  env = { ...process.env, ...AWS_CLIENT_ENV, KILN_URL: kiln.url };
});
after(() => kiln.close());

async function aws(...args: string[]) {
  try {
    const { stdout, stderr } = await run("aws", ["--endpoint-url", kiln.url, "--output", "json", ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

async function python(script: string) {
  const { stdout } = await run(process.env.KILN_TEST_PYTHON ?? "python3", ["-c", script], { env });
  return JSON.parse(stdout) as Record<string, unknown>;
}

describe("AWS CLI", () => {
  it("makes signed calls", async () => {
    const regions = await aws("ec2", "describe-regions", "--region-names", "eu-central-1");
    assert.equal(regions.code, 0, regions.stderr);
    assert.deepEqual(JSON.parse(regions.stdout).Regions, [
      { OptInStatus: "opt-in-not-required", RegionName: "eu-central-1", Endpoint: "ec2.eu-central-1.amazonaws.com" },
    ]);
    const volume = await aws("ec2", "create-volume", "--availability-zone", "us-east-1a", "--size", "1");
    assert.equal(volume.code, 0, volume.stderr);
    const { VolumeId } = JSON.parse(volume.stdout) as { VolumeId: string };
    const created = await aws("ec2", "create-tags", "--resources", VolumeId, "--tags", "Key=Name,Value=from-cli");
    assert.equal(created.code, 0, created.stderr);
    const tags = await aws("ec2", "describe-tags", "--filters", `Name=resource-id,Values=${VolumeId}`);
    assert.deepEqual(JSON.parse(tags.stdout).Tags, [{ Key: "Name", ResourceId: VolumeId, ResourceType: "volume", Value: "from-cli" }]);
  });

  it("parses EC2 errors", async () => {
    const result = await aws("ec2", "describe-availability-zones", "--zone-names", "us-east-1z");
    assert.notEqual(result.code, 0);
    assert.match(
      result.stderr,
      /An error occurred \(InvalidParameterValue\) when calling the DescribeAvailabilityZones operation: Invalid availability zone: \[us-east-1z\]/,
    );
    const dry = await aws("ec2", "describe-regions", "--dry-run");
    assert.match(dry.stderr, /\(DryRunOperation\)/);
  });

  it("makes and lists S3 buckets, and parses S3 errors", async () => {
    const made = await aws("s3", "mb", "s3://cli-bucket");
    assert.equal(made.code, 0, made.stderr);
    const listed = await aws("s3api", "list-buckets");
    assert.deepEqual(
      (JSON.parse(listed.stdout) as { Buckets: { Name: string }[] }).Buckets.map((b) => b.Name),
      ["cli-bucket"],
    );
    const again = await aws("s3api", "delete-bucket", "--bucket", "no-such-bucket-here");
    assert.match(again.stderr, /An error occurred \(NoSuchBucket\) when calling the DeleteBucket operation: The specified bucket does not exist/);
  });
});

describe("AWS CLI with S3 objects", () => {
  it("copies a file large enough to go multipart up and back, lists, tags and removes it", async () => {
    const dir = tempDir();
    const file = join(dir, "disk.img");
    // 20 MB: past the CLI's 8 MiB multipart threshold, so three parts.
    writeFileSync(file, randomBytes(20_000_000));
    assert.equal((await aws("s3", "mb", "s3://cli-objects")).code, 0);
    const up = await aws("s3", "cp", "--only-show-errors", file, "s3://cli-objects/images/disk.img");
    assert.equal(up.code, 0, up.stderr);
    const head = JSON.parse((await aws("s3api", "head-object", "--bucket", "cli-objects", "--key", "images/disk.img")).stdout) as {
      ContentLength: number;
      ETag: string;
    };
    assert.equal(head.ContentLength, 20_000_000);
    assert.match(head.ETag, /^"[0-9a-f]{32}-3"$/);
    const down = await aws("s3", "cp", "--only-show-errors", "s3://cli-objects/images/disk.img", join(dir, "back.img"));
    assert.equal(down.code, 0, down.stderr);
    assert.ok(readFileSync(join(dir, "back.img")).equals(readFileSync(file)));
    const listing = await aws("s3", "ls", "s3://cli-objects/images/");
    assert.match(listing.stdout, /20000000 disk\.img/);
    assert.equal(
      (await aws("s3api", "put-object-tagging", "--bucket", "cli-objects", "--key", "images/disk.img", "--tagging", "TagSet=[{Key=kind,Value=raw}]")).code,
      0,
    );
    const tags = JSON.parse((await aws("s3api", "get-object-tagging", "--bucket", "cli-objects", "--key", "images/disk.img")).stdout) as { TagSet: unknown };
    assert.deepEqual(tags.TagSet, [{ Key: "kind", Value: "raw" }]);
    const missing = await aws("s3api", "get-object", "--bucket", "cli-objects", "--key", "nothing", join(dir, "x"));
    assert.match(missing.stderr, /\(NoSuchKey\)/);
    assert.equal((await aws("s3", "rb", "--force", "s3://cli-objects")).code, 0);
    assert.deepEqual(
      (JSON.parse((await aws("s3api", "list-buckets")).stdout) as { Buckets: { Name: string }[] }).Buckets.map((b) => b.Name).includes("cli-objects"),
      false,
    );
  });
  it("imports a disk: s3 cp, ec2 import-image, describe-import-image-tasks until completed", async () => {
    const vmdk = await convertDisk(await makeLinuxDisk(scratch()), "vmdk-stream");
    assert.equal((await aws("s3", "mb", "s3://cli-imports")).code, 0);
    assert.equal((await aws("s3", "cp", vmdk, "s3://cli-imports/disks/linux.vmdk")).code, 0);
    const started = await aws(
      "ec2",
      "import-image",
      "--description",
      "from the CLI",
      "--disk-containers",
      "Format=VMDK,UserBucket={S3Bucket=cli-imports,S3Key=disks/linux.vmdk}",
      "--tag-specifications",
      "ResourceType=import-image-task,Tags=[{Key=by,Value=cli}]",
    );
    assert.equal(started.code, 0, started.stderr);
    const { ImportTaskId, Status, Tags } = JSON.parse(started.stdout);
    assert.match(ImportTaskId, /^import-ami-[0-9a-f]{17}$/);
    assert.equal(Status, "active");
    assert.deepEqual(Tags, [{ Key: "by", Value: "cli" }]);
    // biome-ignore lint/suspicious/noExplicitAny: the AWS CLI's JSON, read field by field below.
    let task: any;
    for (const deadline = Date.now() + 60_000; ; ) {
      const described = await aws("ec2", "describe-import-image-tasks", "--import-task-ids", ImportTaskId);
      assert.equal(described.code, 0, described.stderr);
      task = JSON.parse(described.stdout).ImportImageTasks[0];
      if (task.Status !== "active" || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.equal(task.Status, "completed", task.StatusMessage);
    assert.equal(task.Platform, "Linux");
    assert.equal(task.BootMode, "uefi");
    assert.equal(task.SnapshotDetails[0].DiskImageSize, readFileSync(vmdk).length);
    assert.deepEqual(task.SnapshotDetails[0].UserBucket, { S3Bucket: "cli-imports", S3Key: "disks/linux.vmdk" });
    const images = JSON.parse((await aws("ec2", "describe-images", "--image-ids", task.ImageId)).stdout).Images;
    assert.equal(images[0].Description, "from the CLI");
    assert.equal(images[0].BlockDeviceMappings[0].Ebs.SnapshotId, task.SnapshotDetails[0].SnapshotId);
  });
});

describe("boto3", () => {
  it("uploads and downloads through the transfer manager, with its default checksums", async () => {
    const result = await python(`
import hashlib, io, json, os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["KILN_URL"], region_name="us-east-1")
s3.create_bucket(Bucket="boto-objects")
data = os.urandom(12 * 1024 * 1024 + 17)
s3.upload_fileobj(io.BytesIO(data), "boto-objects", "blob.bin")
back = io.BytesIO()
s3.download_fileobj("boto-objects", "blob.bin", back)
single = s3.put_object(Bucket="boto-objects", Key="small", Body=b"hello", ChecksumAlgorithm="SHA256")
got = s3.get_object(Bucket="boto-objects", Key="small", ChecksumMode="ENABLED")
print(json.dumps({"same": back.getvalue() == data, "sha": single.get("ChecksumSHA256"), "want": __import__("base64").b64encode(hashlib.sha256(b"hello").digest()).decode(), "got": got["Body"].read().decode(), "gotSha": got.get("ChecksumSHA256")}))
`);
    assert.equal(result.same, true);
    assert.equal(result.sha, result.want);
    assert.equal(result.gotSha, result.want);
    assert.equal(result.got, "hello");
  });

  it("makes a signed call, follows a presigned URL and parses errors", async () => {
    const result = await python(`
import json, os, urllib.request, boto3
from botocore.exceptions import ClientError
ec2 = boto3.client("ec2", endpoint_url=os.environ["KILN_URL"], region_name="ap-northeast-1")
zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]]
# botocore signs a presigned URL for the operation's HTTP method (POST in EC2's model) unless told GET.
presigned = []
for method in ["GET", "POST"]:
    url = ec2.generate_presigned_url("describe_regions", Params={"RegionNames": ["us-west-2"]}, ExpiresIn=300, HttpMethod=method)
    with urllib.request.urlopen(urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)) as response:
        presigned.append({"status": response.status, "body": response.read().decode()})
errors = {}
for name, call in [("page", lambda: ec2.describe_tags(MaxResults=2)), ("dry", lambda: ec2.describe_regions(DryRun=True)), ("id", lambda: ec2.create_tags(Resources=["nonsense"], Tags=[{"Key": "a", "Value": "b"}]))]:
    try:
        call()
        errors[name] = None
    except ClientError as error:
        errors[name] = [error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]]
print(json.dumps({"zones": zones, "presigned": presigned, "errors": errors}))
`);
    assert.deepEqual(result.zones, ["ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"]);
    const presigned = result.presigned as { status: number; body: string }[];
    assert.equal(presigned.length, 2);
    for (const answer of presigned) {
      assert.equal(answer.status, 200);
      assert.match(answer.body, /<regionInfo><item><optInStatus>opt-in-not-required<\/optInStatus><regionName>us-west-2<\/regionName>/);
    }
    assert.deepEqual(result.errors, { page: ["InvalidParameterValue", 400], dry: ["DryRunOperation", 412], id: ["InvalidID", 400] });
  });
  it("imports a data disk as a snapshot, waiting with the snapshot_imported waiter", async () => {
    const disk = await convertDisk(await makeDataDisk(scratch()), "vhd-dynamic");
    const result = await python(`
import json, os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["KILN_URL"], region_name="us-east-1")
ec2 = boto3.client("ec2", endpoint_url=os.environ["KILN_URL"], region_name="us-east-1")
s3.create_bucket(Bucket="boto3-imports")
s3.upload_file(${JSON.stringify(disk)}, "boto3-imports", "data.vhd")
task_id = ec2.import_snapshot(Description="from boto3", DiskContainer={"Format": "VHD", "UserBucket": {"S3Bucket": "boto3-imports", "S3Key": "data.vhd"}})["ImportTaskId"]
ec2.get_waiter("snapshot_imported").wait(ImportTaskIds=[task_id], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
detail = ec2.describe_import_snapshot_tasks(ImportTaskIds=[task_id])["ImportSnapshotTasks"][0]["SnapshotTaskDetail"]
snapshot = ec2.describe_snapshots(SnapshotIds=[detail["SnapshotId"]])["Snapshots"][0]
print(json.dumps({"status": detail["Status"], "format": detail["Format"], "size": detail["DiskImageSize"], "state": snapshot["State"], "volumeSize": snapshot["VolumeSize"]}))
`);
    assert.deepEqual(result, { status: "completed", format: "VHD", size: readFileSync(disk).length, state: "completed", volumeSize: 1 });
  });
});
