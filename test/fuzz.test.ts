// A fuzzer in the suite: random and mutated requests against the EC2 codec (form, query, XML and
// JSON bodies, built from the official model), the S3 routes (keys, headers, subresources,
// aws-chunked framing), the EBS direct APIs, SSM Parameter Store and Kiln's own routes. For every request: never a 5xx
// (S3's own 501 NotImplemented aside), an answer within a deadline, and a refusal in the
// protocol's error form; after each batch, health answers at once; and throughout, the account
// that sends nothing (the owner) keeps its state exactly, whatever another account or an unsigned
// request or a web page sends, and none of its data reaches them.
//
// Seeded and bounded in count and time so it fits CI. KILN_FUZZ_SEED replays a run,
// KILN_FUZZ_RUNS multiplies its length (`npm run fuzz` runs 20 times as many requests).
import assert from "node:assert/strict";
import { after, before, describe, it, type TestContext } from "node:test";
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DescribeImageAttributeCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  DescribeSnapshotsCommand,
  DescribeTagsCommand,
  DescribeVolumesCommand,
  RegisterImageCommand,
  RunInstancesCommand,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, GetObjectCommand, GetObjectTaggingCommand, ListBucketsCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { DescribeParametersCommand, GetParametersByPathCommand, ListTagsForResourceCommand, PutParameterCommand } from "@aws-sdk/client-ssm";
import fc from "fast-check";
import { ec2Actions } from "../src/api/ec2/index.js";
import { ec2Model } from "../src/protocol/model.js";
import { writeSnapshot } from "./helpers/data.js";
import {
  adminRequestArb,
  ebsRequestArb,
  ec2RequestArb,
  exchange,
  hasProtocolError,
  routedProtocol,
  s3RequestArb,
  ssmRequestArb,
  wireBytes,
  type FuzzRequest,
  type Pools,
} from "./helpers/fuzz.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { catalogueImage } from "./helpers/resources.js";

const SEED = Number(process.env.KILN_FUZZ_SEED ?? 20261206);
const SCALE = Number(process.env.KILN_FUZZ_RUNS ?? 1);
const DEADLINE_MS = 10_000;
const OWNER = "test"; // account 000000000000
const STRANGER = "111111111111";
// What only the owner's data holds: no answer to anyone else may carry it.
const MARKER = `owner-secret-${SEED}`;

let kiln: TestKiln;
let port: number;
let pools: Pools;

before(async () => {
  kiln = await startTestKiln({}, { KILN_ADMIN_TOKEN: "a-long-operator-secret" });
  port = Number(new URL(kiln.url).port);
  const ec2 = kiln.ec2();
  const s3 = kiln.s3();
  const strangerS3 = kiln.s3({ accessKeyId: STRANGER });
  await s3.send(new CreateBucketCommand({ Bucket: "fuzz-owner" }));
  await s3.send(new PutObjectCommand({ Bucket: "fuzz-owner", Key: "obj", Body: MARKER, Metadata: { note: MARKER }, Tagging: "k=v" }));
  await strangerS3.send(new CreateBucketCommand({ Bucket: "fuzz-stranger" }));
  await strangerS3.send(new PutObjectCommand({ Bucket: "fuzz-stranger", Key: "b-obj", Body: "stranger's" }));
  const snapshot = await writeSnapshot(kiln, new Map([[0, Buffer.alloc(512 * 1024, 0x61)]]), { size: 1 });
  const strangerSnapshot = await writeSnapshot(kiln, new Map([[1, Buffer.alloc(512 * 1024, 0x62)]]), { size: 1, accessKeyId: STRANGER });
  const { VolumeId } = await ec2.send(
    new CreateVolumeCommand({
      AvailabilityZone: "us-east-1a",
      SnapshotId: snapshot,
      TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "Name", Value: MARKER }] }],
    }),
  );
  const { KeyPairId } = await ec2.send(new CreateKeyPairCommand({ KeyName: "fuzz-owner-key" }));
  const { GroupId } = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "fuzz-owner-sg", Description: MARKER }));
  await ec2.send(
    new AuthorizeSecurityGroupIngressCommand({
      GroupId,
      IpPermissions: [{ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "10.0.0.0/8" }] }],
    }),
  );
  const { ImageId } = await ec2.send(
    new RegisterImageCommand({
      Name: "fuzz-owner-image",
      Description: MARKER,
      VirtualizationType: "hvm",
      RootDeviceName: "/dev/xvda",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshot } }],
    }),
  );
  const publicImage = await catalogueImage(ec2);
  const { Instances } = await ec2.send(
    new RunInstancesCommand({
      ImageId: publicImage,
      InstanceType: "t3.micro",
      MinCount: 1,
      MaxCount: 1,
      KeyName: "fuzz-owner-key",
      SecurityGroupIds: [GroupId!],
    }),
  );
  const instanceId = Instances![0]!.InstanceId!;
  await ec2.send(new CreateTagsCommand({ Resources: [instanceId, ImageId!, snapshot, KeyPairId!], Tags: [{ Key: "owner", Value: MARKER }] }));
  const ssm = kiln.ssm();
  await ssm.send(new PutParameterCommand({ Name: "/fuzz/owner/plain", Type: "String", Value: MARKER, Tags: [{ Key: "Owner", Value: MARKER }] }));
  await ssm.send(new PutParameterCommand({ Name: "/fuzz/owner/secret", Type: "SecureString", Value: MARKER }));
  await kiln.ssm({ accessKeyId: STRANGER }).send(new PutParameterCommand({ Name: "/fuzz/stranger", Type: "String", Value: "stranger's" }));
  const stranger = kiln.ec2({ accessKeyId: STRANGER });
  const strangerInstance = (await stranger.send(new RunInstancesCommand({ ImageId: publicImage, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 })))
    .Instances![0]!.InstanceId!;
  pools = {
    ids: [
      snapshot,
      VolumeId!,
      KeyPairId!,
      GroupId!,
      ImageId!,
      instanceId,
      strangerSnapshot,
      strangerInstance,
      publicImage,
      "fuzz-owner-key",
      "fuzz-owner-sg",
      "default",
    ],
    buckets: ["fuzz-owner", "fuzz-stranger", "no-such-bucket"],
    keys: ["obj", "b-obj", "no-such-key"],
    instanceIds: [instanceId, strangerInstance],
    snapshotIds: [snapshot, strangerSnapshot],
    parameterNames: ["/fuzz/owner/plain", "/fuzz/owner/secret", "/fuzz/stranger", "/fuzz/none"],
  };
});
after(() => kiln.close());

/** Everything the owner can see of its own, in a form two snapshots of it can be compared in. */
async function ownerState(): Promise<string> {
  const ec2 = kiln.ec2();
  const s3 = kiln.s3();
  const tags = (list: { Key?: string; Value?: string }[] | undefined) => (list ?? []).map((t) => `${t.Key}=${t.Value}`).sort();
  const volumes = (await ec2.send(new DescribeVolumesCommand({}))).Volumes!.map((v) => [
    v.VolumeId,
    v.Size,
    v.State,
    v.SnapshotId,
    v.Attachments?.map((a) => [a.InstanceId, a.State]),
    tags(v.Tags),
  ]);
  const snapshots = (await ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"] }))).Snapshots!.map((s) => [
    s.SnapshotId,
    s.State,
    s.VolumeSize,
    s.Description,
    tags(s.Tags),
  ]);
  const images = [];
  for (const image of (await ec2.send(new DescribeImagesCommand({ Owners: ["self"] }))).Images!) {
    const permissions = (await ec2.send(new DescribeImageAttributeCommand({ ImageId: image.ImageId, Attribute: "launchPermission" }))).LaunchPermissions;
    images.push([image.ImageId, image.State, image.Name, image.Description, image.Public, tags(image.Tags), permissions]);
  }
  const instances = (await ec2.send(new DescribeInstancesCommand({})))
    .Reservations!.flatMap((r) => r.Instances!)
    .map((i) => [i.InstanceId, i.State?.Name, i.InstanceType, i.KeyName, tags(i.Tags)]);
  const keyPairs = (await ec2.send(new DescribeKeyPairsCommand({}))).KeyPairs!.map((k) => [k.KeyPairId, k.KeyName, k.KeyFingerprint]);
  const groups = (await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups!.map((g) => [
    g.GroupId,
    g.GroupName,
    JSON.stringify(g.IpPermissions),
    JSON.stringify(g.IpPermissionsEgress),
  ]);
  const allTags = (await ec2.send(new DescribeTagsCommand({}))).Tags!.map((t) => `${t.ResourceId}:${t.Key}=${t.Value}`).sort();
  const buckets = (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name).sort();
  const objects = [];
  for (const object of (await s3.send(new ListObjectsV2Command({ Bucket: "fuzz-owner" }))).Contents ?? []) {
    const got = await s3.send(new GetObjectCommand({ Bucket: "fuzz-owner", Key: object.Key }));
    const tagSet = (await s3.send(new GetObjectTaggingCommand({ Bucket: "fuzz-owner", Key: object.Key }))).TagSet;
    objects.push([object.Key, got.ETag, got.ContentType, got.Metadata, await got.Body!.transformToString(), tags(tagSet)]);
  }
  const ssm = kiln.ssm();
  const parameters = [];
  for (const p of (await ssm.send(new DescribeParametersCommand({}))).Parameters!) {
    const { TagList } = await ssm.send(new ListTagsForResourceCommand({ ResourceType: "Parameter", ResourceId: p.Name }));
    parameters.push([p.Name, p.Type, p.Version, p.Description, p.AllowedPattern, p.DataType, tags(TagList)]);
  }
  const values = (await ssm.send(new GetParametersByPathCommand({ Path: "/", Recursive: true, WithDecryption: true }))).Parameters!.map((p) => [
    p.Name,
    p.Value,
  ]);
  return JSON.stringify({ volumes, snapshots, images, instances, keyPairs, groups, allTags, buckets, objects, parameters, values }, null, 1);
}

const describeRequest = (r: FuzzRequest) =>
  `${r.protocol} ${r.method} ${r.path.slice(0, 200)} query=${JSON.stringify(r.query).slice(0, 300)} headers=${JSON.stringify(r.headers).slice(0, 400)} body=${JSON.stringify(r.body.subarray(0, 300).toString("latin1"))} signing=${JSON.stringify(r.signing)}`;

/** Sends each request of `arbitrary` and holds Kiln to the fuzzer's rules. */
async function fuzz(t: TestContext, name: string, arbitrary: () => fc.Arbitrary<FuzzRequest>, runs: number, seconds: number) {
  const before = await ownerState();
  let sent = 0;
  const outcomes = new Map<string, number>();
  const result = await fc.check(
    fc.asyncProperty(arbitrary(), async (request) => {
      const answer = await exchange(port, await wireBytes(request, port), DEADLINE_MS).catch((error: Error) =>
        assert.fail(`${error.message}: ${describeRequest(request)}`),
      );
      sent++;
      const code =
        /<Code>([^<]+)<\/Code>|"Code":"([^"]+)"|"error":"([^"]+)"/.exec(answer.body)?.slice(1).find(Boolean) ?? answer.headers["x-amzn-errortype"] ?? "";
      const outcome = `${answer.status} ${code}`.trim();
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      // S3 answers what it does not implement with 501 NotImplemented (HEAD: no body): S3's own error, kept as S3 has it.
      const notImplemented =
        routedProtocol(request) === "s3" && answer.status === 501 && (request.method === "HEAD" || /<Code>NotImplemented<\/Code>/.test(answer.body));
      assert.ok(answer.status < 500 || notImplemented, `${answer.status} ${answer.body.slice(0, 300)} for ${describeRequest(request)}`);
      assert.ok(hasProtocolError(request, answer), `a bare ${answer.status} (${answer.body.slice(0, 200)}) for ${describeRequest(request)}`);
      // The owner signs nothing here that Kiln may serve: no answer carries the owner's data. Every
      // resource of the owner's carries the marker (a tag, a description, the object's bytes); ids
      // themselves prove nothing, as a stranger may name its own things after them.
      if (answer.status < 300 && answer.body.includes(MARKER))
        assert.fail(`the owner's data reached another: ${describeRequest(request)} → ${answer.body.slice(0, 500)}`);
    }),
    { seed: SEED, numRuns: runs * SCALE, interruptAfterTimeLimit: seconds * 1000 * SCALE, endOnFailure: true },
  );
  // What the requests met, most often first: a run that only ever meets the signature check reaches nothing.
  t.diagnostic(
    `${name}: ${sent} requests; ${[...outcomes]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([o, n]) => `${o} ×${n}`)
      .join(", ")}`,
  );
  if (result.failed) assert.fail(`${name}: ${fc.defaultReportMessage(result)}\n${String(result.errorInstance)}`);
  const health = await exchange(port, Buffer.from(`GET /_kiln/health HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n`), 1000);
  assert.equal(health.status, 200, "health answers after the batch");
  assert.equal(await ownerState(), before, `${name}: the owner's state changed`);
  assert.ok(sent >= Math.min(runs, 25), `${name}: only ${sent} requests went out in the time allowed`);
}

describe(`fuzzing (seed ${SEED})`, () => {
  it("the EC2 Query codec and actions", async (t) => {
    const model = ec2Model();
    const actions = [...ec2Actions(model).keys()];
    await fuzz(t, "EC2", () => ec2RequestArb(model, actions, pools, STRANGER), 1500, 40);
  });

  it("the S3 routes", async (t) => {
    await fuzz(t, "S3", () => s3RequestArb(pools, STRANGER), 1000, 25);
  });

  it("the EBS direct APIs", async (t) => {
    await fuzz(t, "EBS", () => ebsRequestArb(pools, STRANGER), 600, 20);
  });

  it("SSM Parameter Store", async (t) => {
    await fuzz(t, "SSM", () => ssmRequestArb(pools, STRANGER), 600, 15);
  });

  it("Kiln's own routes", async (t) => {
    await fuzz(t, "admin", () => adminRequestArb(pools, OWNER, STRANGER), 300, 15);
  });
});
