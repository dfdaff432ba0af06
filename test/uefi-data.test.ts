// UEFI data through the SDK, with no guest: RegisterImage takes it (and refuses what it cannot
// read, with the reason), DescribeImageAttribute returns it, an instance launched from the
// image has it in GetInstanceUefiData, and CreateImage, CopyImage and a store and restore carry
// it to the next image. What a running guest changes is shown in test/guests/boot.test.ts.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { deflateSync } from "node:zlib";
import { after, before, describe, it } from "node:test";
import {
  CopyImageCommand,
  CreateImageCommand,
  CreateRestoreImageTaskCommand,
  CreateStoreImageTaskCommand,
  DescribeImageAttributeCommand,
  DescribeImagesCommand,
  DescribeStoreImageTasksCommand,
  GetInstanceUefiDataCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  type EC2Client,
  type EC2ServiceException,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { readArchive, writeArchive, type ArchiveManifest, type ArchivedBlock } from "../src/formats/image-archive.js";
import { decodeAwsUefiData, encodeAwsUefiData } from "../src/formats/uefi/aws-uefi-data.js";
import type { UefiVariable } from "../src/formats/uefi/variable.js";
import { BLOCK, writeSnapshot } from "./helpers/data.js";
import { crc32c } from "./helpers/checksums.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
let ec2: EC2Client;
let snapshotId: string;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
  snapshotId = await writeSnapshot(kiln, new Map([[0, randomBytes(BLOCK)]]), { size: 1 });
});
after(() => kiln.close());

/** A test vendor GUID, EFI_GLOBAL_VARIABLE, and variables as an image's firmware would keep them. */
const KILN_TEST_GUID = "4b696c6e-7465-4000-8000-756566697661";
const GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
const VARIABLES: UefiVariable[] = [
  { guid: GLOBAL, name: "BootOrder", attributes: 0x7, data: Buffer.from([0, 0, 1, 0]) },
  { guid: KILN_TEST_GUID, name: "KilnImageVariable", attributes: 0x7, data: Buffer.from("set at RegisterImage") },
  {
    guid: KILN_TEST_GUID,
    name: "KilnAuthenticated",
    attributes: 0x27,
    timestamp: Buffer.from([0xea, 0x07, 12, 7, 10, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    digest: Buffer.alloc(32, 0x5a),
    data: Buffer.from("time-based authenticated"),
  },
];

async function register(name: string, uefiData?: string, bootMode: "uefi" | "legacy-bios" = "uefi"): Promise<string> {
  const { ImageId } = await ec2.send(
    new RegisterImageCommand({
      Name: name,
      Architecture: "x86_64",
      BootMode: bootMode,
      RootDeviceName: "/dev/xvda",
      VirtualizationType: "hvm",
      BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId } }],
      UefiData: uefiData,
    }),
  );
  return ImageId!;
}

async function imageUefiData(imageId: string): Promise<string | undefined> {
  const { UefiData } = await ec2.send(new DescribeImageAttributeCommand({ ImageId: imageId, Attribute: "uefiData" }));
  return UefiData?.Value;
}

async function launch(imageId: string): Promise<string> {
  const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
  return Instances![0]!.InstanceId!;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((resolve) => setTimeout(resolve, 50))) {
    const value = await probe();
    if (value !== undefined) return value;
  }
  assert.fail(`timed out waiting for ${what}`);
}

const available = (imageId: string) =>
  until(`${imageId} to be available`, async () => {
    const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
    return Images?.[0]?.State === "available" ? true : undefined;
  });

async function refused(uefiData: string, message: RegExp): Promise<void> {
  await assert.rejects(register(`refused-${randomBytes(4).toString("hex")}`, uefiData), (error: EC2ServiceException) => {
    assert.equal(error.name, "InvalidParameterValue");
    assert.equal(error.$metadata.httpStatusCode, 400);
    assert.match(error.message, message);
    return true;
  });
}

/** EC2's framing (magic, CRC-32C, version 0) around a zlib stream. */
function framed(zlibStream: Buffer): string {
  const body = Buffer.concat([Buffer.alloc(4), zlibStream]);
  const head = Buffer.alloc(12);
  head.write("AMZNUEFI", 0, "latin1");
  head.writeUInt32LE(crc32c(body), 8);
  return Buffer.concat([head, body]).toString("base64");
}

describe("UEFI data", () => {
  let uefiData: string;
  let imageId: string;

  it("is kept by RegisterImage and returned by DescribeImageAttribute", async () => {
    uefiData = await encodeAwsUefiData(VARIABLES);
    imageId = await register("with-uefi-data", uefiData);
    assert.equal(await imageUefiData(imageId), uefiData);
    assert.equal(await imageUefiData(await register("without-uefi-data")), undefined);
  });

  it("is refused by RegisterImage, with the reason, when Kiln cannot read it", async () => {
    await refused("not base64!", /UefiData: the UEFI data is not base64/);
    await refused(Buffer.from("NOTUEFI!and some more bytes").toString("base64"), /no AMZNUEFI magic/);
    const blob = Buffer.from(uefiData, "base64");
    blob[blob.length - 1]! ^= 1;
    await refused(blob.toString("base64"), /CRC-32C does not match/);
    // What EC2 makes is deflated against its own preset dictionary (FDICT, then its Adler-32).
    await refused(framed(Buffer.from([0x78, 0xf9, 0x6b, 0xb7, 0xd9, 0xf7, 0, 0])), /EC2's own preset dictionary/);
    await refused(framed(deflateSync(Buffer.alloc(16 * 1024 * 1024))), /inflates past/);
  });

  it("goes with an instance launched from the image, and on to the images made from it", async () => {
    const instanceId = await launch(imageId);
    const { UefiData } = await ec2.send(new GetInstanceUefiDataCommand({ InstanceId: instanceId }));
    assert.deepEqual(await decodeAwsUefiData(UefiData!), VARIABLES);

    const captured = await ec2.send(new CreateImageCommand({ InstanceId: instanceId, Name: "captured", NoReboot: true }));
    await available(captured.ImageId!);
    assert.deepEqual(await decodeAwsUefiData((await imageUefiData(captured.ImageId!))!), VARIABLES);

    const copied = await ec2.send(new CopyImageCommand({ SourceImageId: imageId, SourceRegion: "us-east-1", Name: "copied" }));
    await available(copied.ImageId!);
    assert.equal(await imageUefiData(copied.ImageId!), uefiData);

    // An instance that boots on legacy BIOS has no UEFI data.
    const bios = await launch(await register("legacy", undefined, "legacy-bios"));
    assert.equal((await ec2.send(new GetInstanceUefiDataCommand({ InstanceId: bios }))).UefiData, undefined);
  });

  it("is stored to S3 with its image and restored with it", async () => {
    await kiln.s3().send(new CreateBucketCommand({ Bucket: "uefi-amis" }));
    const { ObjectKey } = await ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "uefi-amis" }));
    await until("the store task to end", async () => {
      const { StoreImageTaskResults } = await ec2.send(new DescribeStoreImageTasksCommand({ ImageIds: [imageId] }));
      const state = StoreImageTaskResults?.[0]?.StoreTaskState;
      assert.notEqual(state, "Failed");
      return state === "Completed" ? true : undefined;
    });
    const restored = await ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "uefi-amis", ObjectKey, Name: "restored" }));
    await available(restored.ImageId!);
    assert.equal(await imageUefiData(restored.ImageId!), uefiData);

    // The same archive with UEFI data Kiln cannot read restores as a failed image that says why.
    const s3 = kiln.s3();
    const stored = await (await s3.send(new GetObjectCommand({ Bucket: "uefi-amis", Key: ObjectKey }))).Body!.transformToByteArray();
    const parts: (ArchiveManifest | ArchivedBlock)[] = [];
    for await (const part of readArchive(Readable.from([Buffer.from(stored)]))) parts.push(part);
    const [manifest, ...blocks] = parts as [ArchiveManifest, ...ArchivedBlock[]];
    manifest.image.uefiData = Buffer.from("NOTUEFI!and some more bytes").toString("base64");
    const rewritten: Buffer[] = [];
    for await (const piece of writeArchive(manifest, Readable.from(blocks))) rewritten.push(piece);
    await s3.send(new PutObjectCommand({ Bucket: "uefi-amis", Key: "bad-uefi.bin", Body: Buffer.concat(rewritten) }));
    const bad = await ec2.send(new CreateRestoreImageTaskCommand({ Bucket: "uefi-amis", ObjectKey: "bad-uefi.bin", Name: "bad-uefi" }));
    const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [bad.ImageId!] }));
    assert.equal(Images![0]!.State, "failed");
    assert.equal(Images![0]!.StateReason!.Code, "Client.InvalidImageArchive");
    assert.match(Images![0]!.StateReason!.Message!, /its image's UEFI data is invalid: not EC2 UEFI data: no AMZNUEFI magic/);
  });
});
