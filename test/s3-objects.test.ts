// S3 objects through @aws-sdk/client-s3 with its default checksum behaviour: put, get (ranges,
// conditions, checksums), head, copy, delete, listings, tagging, multipart, presigned URLs, and
// signed aws-chunked bodies; interrupted and corrupted uploads leave nothing visible.
import assert from "node:assert/strict";
import { randomBytes, createHash } from "node:crypto";
import { mkdirSync, readdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import { Readable } from "node:stream";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  DeleteObjectTaggingCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { crc32Base64, crc32cBase64, crc64nvmeBase64 } from "./helpers/checksums.js";
import { errorName } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { signedChunkedPut, signedHeaders, signedRequest } from "./helpers/signed.js";
import { assertStorageBackTo, storageAfterCollect, type StorageState } from "./helpers/storage.js";

let kiln: TestKiln;
let s3: S3Client;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());
beforeEach(async () => {
  await kiln.reset();
  s3 = kiln.s3();
  await s3.send(new CreateBucketCommand({ Bucket: "data" }));
});

const bytesOf = async (key: string, extra: Partial<ConstructorParameters<typeof GetObjectCommand>[0]> = {}) =>
  Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: "data", Key: key, ...extra }))).Body!.transformToByteArray());
// Expected checksums come from the tests' own CRCs (checked against published values), not
// from node:zlib or @aws-sdk/checksums, which Kiln computes them with.
const crc32Of = crc32Base64;
const md5Hex = (data: Buffer) => createHash("md5").update(data).digest("hex");
const statusOf = async (promise: Promise<unknown>) =>
  promise.then(
    () => 200,
    (error: { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode,
  );
/**
 * What storage holds after collection, with one object ("witness") stored first: the blob home
 * then exists (the count throws if it does not, so a wrong place cannot read as zero), and the
 * count is seen to be one, not zero. Work that must leave nothing behind is compared with it.
 */
const storageWithWitness = async (): Promise<StorageState> => {
  await s3.send(new PutObjectCommand({ Bucket: "data", Key: "witness", Body: "witness bytes" }));
  const state = await storageAfterCollect(kiln);
  assert.equal(state.blobs.length, 1, `the witness's blob and nothing else: ${state.blobs.join(", ")}`);
  return state;
};
describe("S3 objects", () => {
  it("puts and gets bytes with their metadata, ETag and the SDK's default CRC32", async () => {
    const data = randomBytes(300_000);
    const put = await s3.send(
      new PutObjectCommand({
        Bucket: "data",
        Key: "dir/file one.bin",
        Body: data,
        ContentType: "application/x-test",
        Metadata: { origin: "kiln-test" },
        CacheControl: "no-cache",
        Tagging: "team=images&stage=test",
      }),
    );
    assert.equal(put.ETag, `"${md5Hex(data)}"`);
    assert.equal(put.ChecksumCRC32, crc32Of(data));
    const got = await s3.send(new GetObjectCommand({ Bucket: "data", Key: "dir/file one.bin", ChecksumMode: "ENABLED" }));
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), data);
    assert.equal(got.ContentType, "application/x-test");
    assert.equal(got.ContentLength, data.length);
    assert.equal(got.ETag, put.ETag);
    assert.equal(got.CacheControl, "no-cache");
    assert.deepEqual(got.Metadata, { origin: "kiln-test" });
    assert.equal(got.TagCount, 2);
    assert.equal(got.ChecksumCRC32, crc32Of(data));
    assert.ok(Date.now() - got.LastModified!.getTime() < 60_000);
    const head = await s3.send(new HeadObjectCommand({ Bucket: "data", Key: "dir/file one.bin" }));
    assert.equal(head.ContentLength, data.length);
    assert.equal(head.ETag, put.ETag);
    // A stream of known length goes aws-chunked with the checksum as a trailer.
    const streamed = randomBytes(200_000);
    const viaStream = await s3.send(
      new PutObjectCommand({
        Bucket: "data",
        Key: "streamed",
        Body: Readable.from([streamed.subarray(0, 70_000), streamed.subarray(70_000)]),
        ContentLength: streamed.length,
      }),
    );
    assert.equal(viaStream.ChecksumCRC32, crc32Of(streamed));
    assert.deepEqual(await bytesOf("streamed"), streamed);
    // Other algorithms, and an empty object.
    for (const algorithm of ["CRC32C", "SHA1", "SHA256", "CRC64NVME"] as const) {
      const answer = await s3.send(new PutObjectCommand({ Bucket: "data", Key: `sum-${algorithm}`, Body: data, ChecksumAlgorithm: algorithm }));
      assert.ok(answer[`Checksum${algorithm}`], algorithm);
      if (algorithm === "CRC32C") assert.equal(answer.ChecksumCRC32C, crc32cBase64(data));
      if (algorithm === "CRC64NVME") assert.equal(answer.ChecksumCRC64NVME, crc64nvmeBase64(data));
      if (algorithm === "SHA256") assert.equal(answer.ChecksumSHA256, createHash("sha256").update(data).digest("base64"));
      if (algorithm === "SHA1") assert.equal(answer.ChecksumSHA1, createHash("sha1").update(data).digest("base64"));
    }
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "empty", Body: "" }));
    assert.equal((await bytesOf("empty")).length, 0);
  });

  it("serves ranges, part numbers and conditional requests", async () => {
    const data = randomBytes(100_000);
    const { ETag } = await s3.send(new PutObjectCommand({ Bucket: "data", Key: "r", Body: data }));
    assert.deepEqual(await bytesOf("r", { Range: "bytes=10-19" }), data.subarray(10, 20));
    assert.deepEqual(await bytesOf("r", { Range: "bytes=99990-" }), data.subarray(99_990));
    assert.deepEqual(await bytesOf("r", { Range: "bytes=-5" }), data.subarray(-5));
    assert.deepEqual(await bytesOf("r", { Range: "bytes=99990-200000" }), data.subarray(99_990));
    const ranged = await s3.send(new GetObjectCommand({ Bucket: "data", Key: "r", Range: "bytes=0-0" }));
    assert.equal(ranged.ContentRange, "bytes 0-0/100000");
    assert.equal(ranged.$metadata.httpStatusCode, 206);
    assert.equal(await errorName(s3.send(new GetObjectCommand({ Bucket: "data", Key: "r", Range: "bytes=100000-" }))), "InvalidRange");
    assert.equal(await statusOf(s3.send(new GetObjectCommand({ Bucket: "data", Key: "r", IfNoneMatch: ETag }))), 304);
    assert.equal(await statusOf(s3.send(new GetObjectCommand({ Bucket: "data", Key: "r", IfMatch: '"0000"' }))), 412);
    assert.equal(await statusOf(s3.send(new GetObjectCommand({ Bucket: "data", Key: "r", IfModifiedSince: new Date(Date.now() + 60_000) }))), 304);
    assert.equal(await statusOf(s3.send(new GetObjectCommand({ Bucket: "data", Key: "r", IfUnmodifiedSince: new Date(Date.now() - 3_600_000) }))), 412);
    assert.equal(
      await statusOf(s3.send(new GetObjectCommand({ Bucket: "data", Key: "r", IfMatch: ETag, IfUnmodifiedSince: new Date(Date.now() - 3_600_000) }))),
      200,
    );
    assert.equal(await statusOf(s3.send(new HeadObjectCommand({ Bucket: "data", Key: "r", IfNoneMatch: "*" }))), 304);
    // Conditional writes: If-None-Match: * refuses to replace.
    assert.equal(await errorName(s3.send(new PutObjectCommand({ Bucket: "data", Key: "r", Body: "x", IfNoneMatch: "*" }))), "PreconditionFailed");
    assert.deepEqual(await bytesOf("r"), data);
  });

  it("refuses bodies that fail their checks, and keeps no trace of them", async () => {
    const storageBefore = await storageWithWitness();
    const wrongMd5 = await signedRequest(kiln.url, {
      method: "PUT",
      path: "/data/md5",
      body: "hello",
      service: "s3",
      headers: { "content-md5": createHash("md5").update("other").digest("base64") },
    });
    assert.equal(wrongMd5.status, 400);
    assert.match(wrongMd5.text, /<Code>BadDigest<\/Code>/);
    const wrongCrc = await signedRequest(kiln.url, {
      method: "PUT",
      path: "/data/crc",
      body: "hello",
      service: "s3",
      headers: { "x-amz-checksum-crc32": crc32Of(Buffer.from("other")) },
    });
    assert.match(wrongCrc.text, /<Code>BadDigest<\/Code>/);
    const badMd5 = await signedRequest(kiln.url, { method: "PUT", path: "/data/md5", body: "hello", service: "s3", headers: { "content-md5": "nope" } });
    assert.match(badMd5.text, /<Code>InvalidDigest<\/Code>/);
    const wrongSha = await signedRequest(kiln.url, {
      method: "PUT",
      path: "/data/sha",
      body: "hello",
      service: "s3",
      headers: { "x-amz-content-sha256": createHash("sha256").update("other").digest("hex") },
    });
    assert.match(wrongSha.text, /<Code>(XAmzContentSHA256Mismatch|SignatureDoesNotMatch)<\/Code>/);
    for (const key of ["md5", "crc", "sha"]) assert.equal(await errorName(s3.send(new HeadObjectCommand({ Bucket: "data", Key: key }))), "NotFound");
    await assertStorageBackTo(kiln, storageBefore, "storage after collection is what it was before the work", 5000);
  });

  it("takes signed aws-chunked bodies, checking every chunk's signature", async () => {
    const chunks = [randomBytes(65_536), randomBytes(65_536), randomBytes(1000)];
    const ok = await signedChunkedPut(kiln.url, { path: "/data/chunked", chunks });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(await bytesOf("chunked"), Buffer.concat(chunks));
    const tampered = await signedChunkedPut(kiln.url, { path: "/data/tampered", chunks, tamper: true });
    assert.equal(tampered.status, 403);
    assert.match(tampered.text, /<Code>SignatureDoesNotMatch<\/Code>/);
    assert.equal(await errorName(s3.send(new HeadObjectCommand({ Bucket: "data", Key: "tampered" }))), "NotFound");
  });

  it("takes unsigned aws-chunked bodies with a checksum trailer, and refuses a wrong trailer", async () => {
    const data = randomBytes(100_000);
    const crc32c = crc32cBase64(data);
    const send = async (key: string, trailerValue: string) => {
      const body = Buffer.concat([
        Buffer.from(`${(60_000).toString(16)}\r\n`),
        data.subarray(0, 60_000),
        Buffer.from("\r\n"),
        Buffer.from(`${(40_000).toString(16)}\r\n`),
        data.subarray(60_000),
        Buffer.from("\r\n"),
        Buffer.from(`0\r\nx-amz-checksum-crc32c:${trailerValue}\r\n\r\n`),
      ]);
      const headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": String(data.length),
        "x-amz-trailer": "x-amz-checksum-crc32c",
      };
      const signed = await signedHeaders(kiln.url, { method: "PUT", path: `/data/${key}`, service: "s3", headers });
      delete signed.host;
      return fetch(`${kiln.url}/data/${key}`, { method: "PUT", headers: signed, body });
    };
    const ok = await send("trailed", crc32c);
    assert.equal(ok.status, 200, await ok.text());
    assert.equal(ok.headers.get("x-amz-checksum-crc32c"), crc32c);
    assert.deepEqual(await bytesOf("trailed"), data);
    const head = await s3.send(new HeadObjectCommand({ Bucket: "data", Key: "trailed", ChecksumMode: "ENABLED" }));
    assert.equal(head.ChecksumCRC32C, crc32c);
    const wrong = await send("wrong-trailer", "AAAAAA==");
    assert.equal(wrong.status, 400);
    assert.match(await wrong.text(), /<Code>BadDigest<\/Code>/);
    assert.equal(await errorName(s3.send(new HeadObjectCommand({ Bucket: "data", Key: "wrong-trailer" }))), "NotFound");
  });

  it("leaves nothing visible when the client stops halfway through a body", async () => {
    const storageBefore = await storageWithWitness();
    const { port } = new URL(kiln.url);
    // A signed PUT that promises 1 MiB and sends 100 KiB, then hangs up.
    const headers = await signedHeaders(kiln.url, {
      method: "PUT",
      path: "/data/half",
      service: "s3",
      headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "content-length": "1048576" },
    });
    await new Promise<void>((resolve) => {
      const socket = connect(Number(port), "127.0.0.1", () => {
        const head = Object.entries(headers)
          .map(([name, value]) => `${name}: ${value}`)
          .join("\r\n");
        socket.write(`PUT /data/half HTTP/1.1\r\n${head}\r\n\r\n`);
        socket.write(randomBytes(100_000), () => setTimeout(() => socket.destroy(), 50));
      });
      socket.on("close", () => resolve());
      socket.on("error", () => resolve());
    });
    // Time for the server to see the hang-up (its half-written blob is there until it does).
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(await errorName(s3.send(new HeadObjectCommand({ Bucket: "data", Key: "half" }))), "NotFound");
    await assertStorageBackTo(kiln, storageBefore, "storage after collection is what it was before the work", 5000);
  });

  it("lists keys by prefix and delimiter, a page at a time (V2 and V1)", async () => {
    const keys = ["a/1", "a/2", "a/b/3", "b/4", "c", "d/5", "d/6"];
    for (const key of keys) await s3.send(new PutObjectCommand({ Bucket: "data", Key: key, Body: key }));
    const all = await s3.send(new ListObjectsV2Command({ Bucket: "data" }));
    assert.deepEqual(
      all.Contents!.map((c) => c.Key),
      keys,
    );
    assert.equal(all.KeyCount, 7);
    assert.equal(all.Contents![0]!.Size, 3);
    const top = await s3.send(new ListObjectsV2Command({ Bucket: "data", Delimiter: "/" }));
    assert.deepEqual(
      top.CommonPrefixes!.map((p) => p.Prefix),
      ["a/", "b/", "d/"],
    );
    assert.deepEqual(
      top.Contents!.map((c) => c.Key),
      ["c"],
    );
    const underA = await s3.send(new ListObjectsV2Command({ Bucket: "data", Prefix: "a/", Delimiter: "/" }));
    assert.deepEqual(
      underA.Contents!.map((c) => c.Key),
      ["a/1", "a/2"],
    );
    assert.deepEqual(
      underA.CommonPrefixes!.map((p) => p.Prefix),
      ["a/b/"],
    );
    // Pages of two, through prefixes and keys alike.
    const seen: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: "data", Delimiter: "/", MaxKeys: 2, ContinuationToken: token }));
      seen.push(...(page.CommonPrefixes ?? []).map((p) => p.Prefix!), ...(page.Contents ?? []).map((c) => c.Key!));
      token = page.NextContinuationToken;
      assert.equal(page.IsTruncated, token !== undefined);
    } while (token);
    assert.deepEqual(seen.sort(), ["a/", "b/", "c", "d/"]);
    const v1 = await s3.send(new ListObjectsCommand({ Bucket: "data", Prefix: "d/", MaxKeys: 1 }));
    assert.deepEqual(
      v1.Contents!.map((c) => c.Key),
      ["d/5"],
    );
    assert.equal(v1.IsTruncated, true);
    const v1Next = await s3.send(new ListObjectsCommand({ Bucket: "data", Prefix: "d/", Marker: "d/5" }));
    assert.deepEqual(
      v1Next.Contents!.map((c) => c.Key),
      ["d/6"],
    );
    assert.deepEqual(
      (await s3.send(new ListObjectsV2Command({ Bucket: "data", StartAfter: "c" }))).Contents!.map((c) => c.Key),
      ["d/5", "d/6"],
    );
  });

  it("copies, tags and deletes objects; a bucket with objects cannot be deleted", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "src", Body: "source bytes", ContentType: "text/plain", Metadata: { a: "1" }, Tagging: "k=v" }));
    await s3.send(new CreateBucketCommand({ Bucket: "other" }));
    const copied = await s3.send(new CopyObjectCommand({ Bucket: "other", Key: "copy", CopySource: "data/src" }));
    assert.equal(copied.CopyObjectResult!.ETag, `"${md5Hex(Buffer.from("source bytes"))}"`);
    const copy = await s3.send(new GetObjectCommand({ Bucket: "other", Key: "copy" }));
    assert.equal(await copy.Body!.transformToString(), "source bytes");
    assert.equal(copy.ContentType, "text/plain");
    assert.deepEqual(copy.Metadata, { a: "1" });
    await s3.send(new CopyObjectCommand({ Bucket: "data", Key: "src", CopySource: "data/src", MetadataDirective: "REPLACE", ContentType: "text/csv" }));
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: "data", Key: "src" }))).ContentType, "text/csv");
    assert.equal(await errorName(s3.send(new CopyObjectCommand({ Bucket: "data", Key: "src", CopySource: "data/src" }))), "InvalidRequest");
    assert.equal(await errorName(s3.send(new CopyObjectCommand({ Bucket: "data", Key: "x", CopySource: "data/missing" }))), "NoSuchKey");

    assert.deepEqual((await s3.send(new GetObjectTaggingCommand({ Bucket: "data", Key: "src" }))).TagSet, [{ Key: "k", Value: "v" }]);
    await s3.send(
      new PutObjectTaggingCommand({
        Bucket: "data",
        Key: "src",
        Tagging: {
          TagSet: [
            { Key: "a", Value: "1" },
            { Key: "b", Value: "" },
          ],
        },
      }),
    );
    assert.deepEqual((await s3.send(new GetObjectTaggingCommand({ Bucket: "data", Key: "src" }))).TagSet, [
      { Key: "a", Value: "1" },
      { Key: "b", Value: "" },
    ]);
    assert.equal(
      await errorName(
        s3.send(
          new PutObjectTaggingCommand({
            Bucket: "data",
            Key: "src",
            Tagging: { TagSet: Array.from({ length: 11 }, (_, i) => ({ Key: `k${i}`, Value: "v" })) },
          }),
        ),
      ),
      "InvalidTag",
    );
    await s3.send(new DeleteObjectTaggingCommand({ Bucket: "data", Key: "src" }));
    assert.deepEqual((await s3.send(new GetObjectTaggingCommand({ Bucket: "data", Key: "src" }))).TagSet ?? [], []);

    assert.equal(await errorName(s3.send(new DeleteBucketCommand({ Bucket: "other" }))), "BucketNotEmpty");
    await s3.send(new DeleteObjectCommand({ Bucket: "other", Key: "copy" }));
    await s3.send(new DeleteObjectCommand({ Bucket: "other", Key: "never-there" }));
    await s3.send(new DeleteBucketCommand({ Bucket: "other" }));
    for (const key of ["x1", "x2", "x3"]) await s3.send(new PutObjectCommand({ Bucket: "data", Key: key, Body: key }));
    const deleted = await s3.send(new DeleteObjectsCommand({ Bucket: "data", Delete: { Objects: [{ Key: "x1" }, { Key: "x2" }, { Key: "absent" }] } }));
    assert.deepEqual(
      deleted.Deleted!.map((d) => d.Key),
      ["x1", "x2", "absent"],
    );
    assert.deepEqual(
      (await s3.send(new ListObjectsV2Command({ Bucket: "data" }))).Contents!.map((c) => c.Key),
      ["src", "x3"],
    );
    assert.equal(await errorName(s3.send(new GetObjectCommand({ Bucket: "data", Key: "x1" }))), "NoSuchKey");
  });

  it("keeps one account's objects from another", async () => {
    await s3.send(new PutObjectCommand({ Bucket: "data", Key: "secret", Body: "mine" }));
    const theirs = kiln.s3({ accessKeyId: "111122223333" });
    assert.equal(await errorName(theirs.send(new GetObjectCommand({ Bucket: "data", Key: "secret" }))), "AccessDenied");
    assert.equal(await errorName(theirs.send(new PutObjectCommand({ Bucket: "data", Key: "secret", Body: "theirs" }))), "AccessDenied");
    assert.equal(await errorName(theirs.send(new ListObjectsV2Command({ Bucket: "data" }))), "AccessDenied");
    assert.equal(await errorName(theirs.send(new DeleteObjectCommand({ Bucket: "data", Key: "secret" }))), "AccessDenied");
    await theirs.send(new CreateBucketCommand({ Bucket: "theirs" }));
    assert.equal(await errorName(theirs.send(new CopyObjectCommand({ Bucket: "theirs", Key: "stolen", CopySource: "data/secret" }))), "AccessDenied");
    assert.equal(await bytesOf("secret").then(String), "mine");
    assert.equal(await errorName(s3.send(new GetObjectCommand({ Bucket: "nobucket", Key: "k" }))), "NoSuchBucket");
  });

  it("serves presigned GET and PUT URLs, and refuses tampered ones", async () => {
    const putUrl = await getSignedUrl(s3, new PutObjectCommand({ Bucket: "data", Key: "presigned" }), { expiresIn: 300 });
    const put = await fetch(putUrl, { method: "PUT", body: "via a presigned URL" });
    assert.equal(put.status, 200, await put.text());
    const getUrl = await getSignedUrl(s3, new GetObjectCommand({ Bucket: "data", Key: "presigned" }), { expiresIn: 300 });
    const got = await fetch(getUrl);
    assert.equal(await got.text(), "via a presigned URL");
    const tampered = await fetch(getUrl.replace("presigned?", "other?"));
    assert.equal(tampered.status, 403);
  });
});

describe("S3 multipart uploads", () => {
  const MiB = 1024 * 1024;

  it("uploads parts, lists them, completes into one object with S3's ETag and checksum", async () => {
    const parts = [randomBytes(5 * MiB), randomBytes(5 * MiB), randomBytes(1234)];
    const whole = Buffer.concat(parts);
    const { UploadId } = await s3.send(
      new CreateMultipartUploadCommand({ Bucket: "data", Key: "big", ContentType: "application/x-disk", ChecksumAlgorithm: "CRC32" }),
    );
    const uploaded: { PartNumber: number; ETag: string; ChecksumCRC32?: string }[] = [];
    // Parts may arrive in any order, and a part sent again replaces the first.
    for (const index of [1, 0, 2, 1]) {
      const answer = await s3.send(
        new UploadPartCommand({ Bucket: "data", Key: "big", UploadId, PartNumber: index + 1, Body: parts[index], ChecksumAlgorithm: "CRC32" }),
      );
      assert.equal(answer.ETag, `"${md5Hex(parts[index]!)}"`);
      assert.equal(answer.ChecksumCRC32, crc32Of(parts[index]!));
      uploaded[index] = { PartNumber: index + 1, ETag: answer.ETag!, ChecksumCRC32: answer.ChecksumCRC32 };
    }
    const listed = await s3.send(new ListPartsCommand({ Bucket: "data", Key: "big", UploadId }));
    assert.deepEqual(
      listed.Parts!.map((p) => [p.PartNumber, p.Size]),
      [
        [1, 5 * MiB],
        [2, 5 * MiB],
        [3, 1234],
      ],
    );
    const uploads = await s3.send(new ListMultipartUploadsCommand({ Bucket: "data" }));
    assert.deepEqual(
      uploads.Uploads!.map((u) => [u.Key, u.UploadId]),
      [["big", UploadId]],
    );
    const complete = (Parts: typeof uploaded) =>
      s3.send(new CompleteMultipartUploadCommand({ Bucket: "data", Key: "big", UploadId, MultipartUpload: { Parts } }));
    assert.equal(await errorName(complete([uploaded[1]!, uploaded[0]!])), "InvalidPartOrder");
    assert.equal(await errorName(complete([{ ...uploaded[0]!, ETag: '"00"' }])), "InvalidPart");
    assert.equal(await errorName(complete([uploaded[2]!, { PartNumber: 4, ETag: uploaded[2]!.ETag }])), "InvalidPart");
    const done = await complete(uploaded);
    const etags = Buffer.concat(parts.map((p) => createHash("md5").update(p).digest()));
    assert.equal(done.ETag, `"${createHash("md5").update(etags).digest("hex")}-3"`);
    const composite = crc32Of(Buffer.concat(parts.map((p) => Buffer.from(crc32Of(p), "base64"))));
    assert.equal(done.ChecksumCRC32, `${composite}-3`);
    assert.deepEqual(await bytesOf("big"), whole);
    assert.deepEqual(await bytesOf("big", { PartNumber: 2 }), parts[1]);
    assert.deepEqual(await bytesOf("big", { Range: `bytes=${5 * MiB - 10}-${5 * MiB + 9}` }), whole.subarray(5 * MiB - 10, 5 * MiB + 10));
    const head = await s3.send(new HeadObjectCommand({ Bucket: "data", Key: "big" }));
    assert.equal(head.ContentLength, whole.length);
    assert.equal(head.ContentType, "application/x-disk");
    assert.deepEqual((await s3.send(new ListMultipartUploadsCommand({ Bucket: "data" }))).Uploads ?? [], []);
    assert.equal(await errorName(s3.send(new UploadPartCommand({ Bucket: "data", Key: "big", UploadId, PartNumber: 1, Body: "late" }))), "NoSuchUpload");
  });

  it("refuses small middle parts, and abort leaves nothing behind", async () => {
    const storageBefore = await storageWithWitness();
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: "data", Key: "small" }));
    const one = await s3.send(new UploadPartCommand({ Bucket: "data", Key: "small", UploadId, PartNumber: 1, Body: randomBytes(1000) }));
    const two = await s3.send(new UploadPartCommand({ Bucket: "data", Key: "small", UploadId, PartNumber: 2, Body: randomBytes(1000) }));
    const parts = [
      { PartNumber: 1, ETag: one.ETag },
      { PartNumber: 2, ETag: two.ETag },
    ];
    assert.equal(
      await errorName(s3.send(new CompleteMultipartUploadCommand({ Bucket: "data", Key: "small", UploadId, MultipartUpload: { Parts: parts } }))),
      "EntityTooSmall",
    );
    assert.equal(await errorName(s3.send(new DeleteBucketCommand({ Bucket: "data" }))), "BucketNotEmpty");
    await s3.send(new AbortMultipartUploadCommand({ Bucket: "data", Key: "small", UploadId }));
    assert.equal(await errorName(s3.send(new ListPartsCommand({ Bucket: "data", Key: "small", UploadId }))), "NoSuchUpload");
    assert.equal(await errorName(s3.send(new AbortMultipartUploadCommand({ Bucket: "data", Key: "small", UploadId }))), "NoSuchUpload");
    assert.equal(await errorName(s3.send(new HeadObjectCommand({ Bucket: "data", Key: "small" }))), "NotFound");
    await assertStorageBackTo(kiln, storageBefore, "storage after collection is what it was before the work", 5000);
    // A one-part upload may be any size.
    const single = await s3.send(new CreateMultipartUploadCommand({ Bucket: "data", Key: "single" }));
    const part = await s3.send(new UploadPartCommand({ Bucket: "data", Key: "single", UploadId: single.UploadId, PartNumber: 1, Body: "tiny" }));
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket: "data",
        Key: "single",
        UploadId: single.UploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
      }),
    );
    assert.equal((await bytesOf("single")).toString(), "tiny");
  });
});

describe("object data at start", () => {
  it("sweeps blobs and half-written files no object names once they are older than the grace period, and no sooner", async () => {
    // The data folder's blobs (bucket-blobs are swept in object-store.test).
    const inFolder = { KILN_OBJECT_STORE_BUCKET: "" };
    const first = await startTestKiln({}, inFolder);
    const dataDir = first.dataDir;
    const client = first.s3();
    await client.send(new CreateBucketCommand({ Bucket: "kept" }));
    await client.send(new PutObjectCommand({ Bucket: "kept", Key: "named", Body: "named bytes" }));
    await first.close();

    // What a stopped node left, and what another node sharing the folder is writing right now.
    const objects = join(dataDir, "objects");
    const place = (path: string, ageMs: number) => {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, "stray");
      const when = new Date(Date.now() - ageMs);
      utimesSync(path, when, when);
      return path;
    };
    const hour = 3600_000;
    const oldBlob = place(join(objects, "ab", "ab".padEnd(32, "0")), hour);
    const newBlob = place(join(objects, "cd", "cd".padEnd(32, "0")), 0);
    const oldPart = place(join(objects, "tmp", "upload-1.tmp"), hour);
    const newPart = place(join(objects, "tmp", "upload-2.tmp"), 0);
    // Every blob already there (the named object's too) is an hour old.
    for (const dir of readdirSync(objects)) {
      for (const name of readdirSync(join(objects, dir))) utimesSync(join(objects, dir, name), new Date(Date.now() - hour), new Date(Date.now() - hour));
    }
    utimesSync(newBlob, new Date(), new Date());
    utimesSync(newPart, new Date(), new Date());

    const second = await startTestKiln({ dataDir }, { ...inFolder, KILN_COLLECT_GRACE_MS: "600000" });
    try {
      assert.throws(() => statSync(oldBlob), "an old blob no object names goes");
      assert.throws(() => statSync(oldPart), "an old half-written file goes");
      assert.ok(statSync(newBlob).isFile(), "a fresh blob may be another node's, about to be named");
      assert.ok(statSync(newPart).isFile(), "a fresh half-written file may be another node's upload");
      const named = await second.s3().send(new GetObjectCommand({ Bucket: "kept", Key: "named" }));
      assert.equal(await named.Body!.transformToString(), "named bytes");
    } finally {
      await second.close();
    }
  });
});
