// The S3 endpoint on Kiln's port, through @aws-sdk/client-s3: buckets, path-style and
// virtual-hosted, per account, with S3's error codes (objects: s3-objects.test.ts).
import assert from "node:assert/strict";
import { Agent } from "node:http";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  GetBucketLocationCommand,
  GetObjectCommand,
  HeadBucketCommand,
  ListBucketsCommand,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { errorName } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { signedRequest } from "./helpers/signed.js";

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

describe("S3 buckets", () => {
  it("creates, lists, heads and deletes buckets, path-style", async () => {
    const s3 = kiln.s3();
    await s3.send(new CreateBucketCommand({ Bucket: "images" }));
    await s3.send(new CreateBucketCommand({ Bucket: "exports-eu", CreateBucketConfiguration: { LocationConstraint: "eu-west-1" } }));
    const { Buckets, Owner } = await s3.send(new ListBucketsCommand({}));
    assert.deepEqual(
      Buckets!.map((b) => [b.Name, b.BucketRegion]),
      [
        ["exports-eu", "eu-west-1"],
        ["images", "us-east-1"],
      ],
    );
    assert.ok(Buckets!.every((b) => b.CreationDate instanceof Date && Date.now() - b.CreationDate.getTime() < 60_000));
    assert.match(Owner!.ID!, /^[0-9a-f]{64}$/);
    const head = await s3.send(new HeadBucketCommand({ Bucket: "exports-eu" }));
    assert.equal(head.BucketRegion, "eu-west-1");
    assert.equal((await s3.send(new GetBucketLocationCommand({ Bucket: "exports-eu" }))).LocationConstraint, "eu-west-1");
    assert.equal((await s3.send(new GetBucketLocationCommand({ Bucket: "images" }))).LocationConstraint, undefined);
    await s3.send(new DeleteBucketCommand({ Bucket: "images" }));
    assert.deepEqual(
      (await s3.send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name),
      ["exports-eu"],
    );
    assert.equal(await errorName(s3.send(new HeadBucketCommand({ Bucket: "images" }))), "NotFound");
    assert.equal(await errorName(s3.send(new DeleteBucketCommand({ Bucket: "images" }))), "NoSuchBucket");
  });

  it("answers virtual-hosted requests (bucket.localhost)", async () => {
    const port = new URL(kiln.url).port;
    // *.localhost may not resolve on the test machine: every name leads to the loopback Kiln.
    const lookup = (_host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) =>
      options.all ? callback(null, [{ address: "127.0.0.1", family: 4 }]) : callback(null, "127.0.0.1", 4);
    const s3 = new S3Client({
      endpoint: `http://localhost:${port}`,
      region: "us-east-1",
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      forcePathStyle: false,
      maxAttempts: 1,
      requestHandler: { httpAgent: new Agent({ lookup: lookup as never }) },
    });
    await s3.send(new CreateBucketCommand({ Bucket: "hosted" }));
    assert.equal((await s3.send(new HeadBucketCommand({ Bucket: "hosted" }))).BucketRegion, "us-east-1");
    assert.deepEqual(
      (await kiln.s3().send(new ListBucketsCommand({}))).Buckets!.map((b) => b.Name),
      ["hosted"],
    );
    // Objects too: the key is the whole path.
    await s3.send(new PutObjectCommand({ Bucket: "hosted", Key: "dir/key with spaces", Body: "virtual" }));
    const got = await kiln.s3().send(new GetObjectCommand({ Bucket: "hosted", Key: "dir/key with spaces" }));
    assert.equal(await got.Body!.transformToString(), "virtual");
  });

  it("keeps names global and buckets to their owner", async () => {
    const mine = kiln.s3();
    const theirs = kiln.s3({ accessKeyId: "111122223333" });
    await mine.send(new CreateBucketCommand({ Bucket: "shared-name" }));
    assert.equal(await errorName(theirs.send(new CreateBucketCommand({ Bucket: "shared-name" }))), "BucketAlreadyExists");
    assert.deepEqual((await theirs.send(new ListBucketsCommand({}))).Buckets ?? [], []);
    assert.equal(await errorName(theirs.send(new DeleteBucketCommand({ Bucket: "shared-name" }))), "AccessDenied");
    // A HEAD answer has no body to name its error: the status says Forbidden.
    const forbidden = await theirs.send(new HeadBucketCommand({ Bucket: "shared-name" })).catch((error: { $metadata: { httpStatusCode?: number } }) => error);
    assert.equal((forbidden as { $metadata: { httpStatusCode?: number } }).$metadata.httpStatusCode, 403);
    // Creating one's own bucket again: 200 in us-east-1 (as S3 does), BucketAlreadyOwnedByYou elsewhere.
    await mine.send(new CreateBucketCommand({ Bucket: "shared-name" }));
    const west = kiln.s3({ region: "eu-west-1" });
    await west.send(new CreateBucketCommand({ Bucket: "west-bucket", CreateBucketConfiguration: { LocationConstraint: "eu-west-1" } }));
    assert.equal(
      await errorName(west.send(new CreateBucketCommand({ Bucket: "west-bucket", CreateBucketConfiguration: { LocationConstraint: "eu-west-1" } }))),
      "BucketAlreadyOwnedByYou",
    );
  });

  it("refuses bad names, bad constraints, bad XML and bad signatures with S3's codes", async () => {
    const s3 = kiln.s3();
    for (const name of ["ab", "Upper", "-dash", "a..b", "192.168.1.1", "xn--punycode", "x".repeat(64)]) {
      assert.equal(await errorName(s3.send(new CreateBucketCommand({ Bucket: name }))), "InvalidBucketName", name);
    }
    assert.equal(
      await errorName(s3.send(new CreateBucketCommand({ Bucket: "nowhere", CreateBucketConfiguration: { LocationConstraint: "mars-1" as "eu-west-1" } }))),
      "InvalidLocationConstraint",
    );
    const malformed = await signedRequest(kiln.url, {
      method: "PUT",
      path: "/bad-xml",
      body: "<CreateBucketConfiguration><LocationConstraint>",
      service: "s3",
    });
    assert.equal(malformed.status, 400);
    assert.match(malformed.text, /<Code>MalformedXML<\/Code>/);
    assert.equal(await errorName(kiln.s3({ secretAccessKey: "wrong" }).send(new ListBucketsCommand({}))), "SignatureDoesNotMatch");
    assert.equal(await errorName(kiln.s3({ accessKeyId: "AKIAUNKNOWN", secretAccessKey: "x" }).send(new ListBucketsCommand({}))), "InvalidAccessKeyId");
    // What Kiln does not serve yet says so, in S3's envelope.
    const unsupported = await signedRequest(kiln.url, { method: "GET", path: "/anything", query: { versioning: "" }, service: "s3" });
    assert.equal(unsupported.status, 501);
    assert.match(unsupported.text, /<Error><Code>NotImplemented<\/Code>/);
  });
});
