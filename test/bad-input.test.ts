// Bytes a client chose never make a 5xx: bad %-escapes and invalid UTF-8 in paths, copy sources
// and URLs, header values no header can carry, requests too large for node:http to parse. And
// what Kiln writes it can read back: an AMI named beyond Latin-1 stores an archive whose
// metadata HeadObject and GetObject serve, RFC 2047-encoded as S3 does.
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CreateKeyPairCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DescribeKeyPairsCommand,
  DescribeTagsCommand,
  CreateStoreImageTaskCommand,
  DescribeStoreImageTasksCommand,
  ImportImageCommand,
  ImportSnapshotCommand,
  RegisterImageCommand,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { errorName, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { errorCode, signedRequest } from "./helpers/signed.js";

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());
beforeEach(async () => {
  await kiln.reset();
  await kiln.s3().send(new CreateBucketCommand({ Bucket: "bkt" }));
  await kiln.s3().send(new PutObjectCommand({ Bucket: "bkt", Key: "disk.raw", Body: Buffer.alloc(1024) }));
});

/** A signed S3 request whose path is sent exactly as given (S3 signs the path as sent). */
const s3Raw = (method: "GET" | "PUT" | "HEAD", path: string, headers: Record<string, string> = {}) =>
  signedRequest(kiln.url, { method, path, service: "s3", headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD", ...headers } });

/** The raw answer to bytes written on a socket, whole. */
function rawExchange(bytes: string | Buffer): Promise<string> {
  const { port } = new URL(kiln.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1", () => socket.end(bytes));
    let answer = "";
    socket.on("data", (chunk) => (answer += chunk.toString("latin1")));
    socket.on("end", () => resolve(answer));
    socket.on("error", reject);
  });
}

describe("malformed %-escapes and invalid UTF-8", () => {
  it("in an S3 key or bucket: InvalidURI", async () => {
    for (const path of ["/bkt/%ZZ", "/bkt/a%", "/bkt/%C3%28", "/bkt/%ED%A0%80", "/%FF/key"]) {
      const response = await s3Raw("GET", path);
      assert.deepEqual([response.status, errorCode(response.text)], [400, "InvalidURI"], path);
    }
    const put = await s3Raw("PUT", "/bkt/%E2%82");
    assert.equal(put.status, 400);
  });

  it("in x-amz-copy-source: InvalidArgument", async () => {
    for (const source of ["bkt/%ZZ", "/bkt/%C3%28"]) {
      const response = await s3Raw("PUT", "/bkt/copy", { "x-amz-copy-source": source });
      assert.deepEqual([response.status, errorCode(response.text)], [400, "InvalidArgument"], source);
    }
  });

  it("in an EBS direct API path: ValidationException", async () => {
    for (const path of ["/snapshots/snap-%ZZ/blocks", "/snapshots/snap-1/blocks/%C3%28"]) {
      const response = await signedRequest(kiln.url, { method: "GET", path, service: "ebs" });
      assert.deepEqual([response.status, response.headers.get("x-amzn-errortype")], [400, "ValidationException"], path);
    }
  });

  it("in an ImportImage or ImportSnapshot Url: InvalidParameterValue", async () => {
    const ec2 = kiln.ec2();
    for (const Url of ["s3://bkt/%ZZ", "s3://bkt/%C3%28", `${kiln.url}/bkt/%E2%82`]) {
      assert.equal(await errorName(ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: "RAW", Url }] }))), "InvalidParameterValue", Url);
      assert.equal(await errorName(ec2.send(new ImportSnapshotCommand({ DiskContainer: { Format: "RAW", Url } }))), "InvalidParameterValue", Url);
    }
  });
});

describe("U+0000 (NUL) in text Kiln would store or look up", () => {
  // PostgreSQL's text cannot hold it; both metadata dialects answer the protocol's 400 alike.
  it("in an S3 bucket, key or query: InvalidArgument", async () => {
    for (const path of ["/%00/a%2Fb/key", "/bkt/a%00b"]) {
      const response = await s3Raw("GET", path);
      assert.deepEqual([response.status, errorCode(response.text)], [400, "InvalidArgument"], path);
    }
    const queries: Record<string, string>[] = [{ prefix: "\0" }, { "list-type": "2", "start-after": "a\0" }];
    for (const query of queries) {
      const response = await signedRequest(kiln.url, {
        method: "GET",
        path: "/bkt",
        query,
        service: "s3",
        headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
      });
      assert.deepEqual([response.status, errorCode(response.text)], [400, "InvalidArgument"], JSON.stringify(query));
    }
    const put = await s3Raw("PUT", "/bkt/nul%00key", { "content-length": "0" });
    assert.deepEqual([put.status, errorCode(put.text)], [400, "InvalidArgument"]);
  });

  it("in an EC2 parameter: InvalidParameterValue, and nothing is made", async () => {
    const ec2 = kiln.ec2();
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    const tag = ec2.send(new CreateTagsCommand({ Resources: [volume.VolumeId!], Tags: [{ Key: "k", Value: "a\0b" }] }));
    assert.equal(await errorName(tag), "InvalidParameterValue");
    assert.equal(await errorName(ec2.send(new CreateKeyPairCommand({ KeyName: "nul\0name" }))), "InvalidParameterValue");
    const tags = await ec2.send(new DescribeTagsCommand({}));
    assert.deepEqual(tags.Tags, []);
    assert.deepEqual((await ec2.send(new DescribeKeyPairsCommand({}))).KeyPairs, []);
  });

  it("in an EBS direct API path: ValidationException", async () => {
    const response = await signedRequest(kiln.url, { method: "GET", path: "/snapshots/snap-0123456789abcdef0%00/blocks", service: "ebs" });
    assert.deepEqual([response.status, response.headers.get("x-amzn-errortype")], [400, "ValidationException"]);
  });
});

describe("values copied into response headers", () => {
  it("response-* overrides a header cannot carry are S3's 400, and nothing is injected", async () => {
    const s3 = kiln.s3();
    for (const ResponseContentType of ["text/plain\r\nX-Injected: yes", "text/plain\nx", "a\u0000b", "café 😀"]) {
      assert.equal(
        await errorName(s3.send(new GetObjectCommand({ Bucket: "bkt", Key: "disk.raw", ResponseContentType }))),
        "InvalidArgument",
        JSON.stringify(ResponseContentType),
      );
    }
    const disposition = 'attachment; filename="x"\r\nSet-Cookie: a=b';
    const raw = await signedRequest(kiln.url, {
      method: "GET",
      path: "/bkt/disk.raw",
      service: "s3",
      query: { "response-content-disposition": disposition },
      headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
    });
    assert.deepEqual([raw.status, errorCode(raw.text)], [400, "InvalidArgument"]);
    assert.equal(raw.headers.get("set-cookie"), null);
    // Values a header can carry are served.
    const fine = await s3.send(
      new GetObjectCommand({
        Bucket: "bkt",
        Key: "disk.raw",
        ResponseContentType: "text/plain; charset=utf-8",
        ResponseContentDisposition: "attachment; filename*=UTF-8''caf%C3%A9.raw",
      }),
    );
    assert.equal(fine.ContentType, "text/plain; charset=utf-8");
    assert.equal(fine.ContentDisposition, "attachment; filename*=UTF-8''caf%C3%A9.raw");
  });

  it("user metadata beyond US-ASCII is RFC 2047-encoded on the way out, and encoded words are decoded on the way in", async () => {
    const s3 = kiln.s3();
    const encoded = `=?UTF-8?B?${Buffer.from("café 😀").toString("base64")}?=`;
    await s3.send(
      new PutObjectCommand({ Bucket: "bkt", Key: "meta", Body: "x", Metadata: { name: encoded, plain: "ascii only", q: "=?utf-8?Q?caf=C3=A9_au_lait?=" } }),
    );
    const head = await s3.send(new HeadObjectCommand({ Bucket: "bkt", Key: "meta" }));
    assert.equal(head.Metadata!.name, encoded);
    assert.equal(head.Metadata!.plain, "ascii only");
    assert.equal(head.Metadata!.q, `=?UTF-8?B?${Buffer.from("café au lait").toString("base64")}?=`);
  });
});

describe("an AMI described beyond Latin-1", () => {
  it("stores an archive whose metadata HeadObject and GetObject serve", async () => {
    const ec2 = kiln.ec2();
    // EC2 keeps AMI names to ASCII letters and a few marks; a description may hold any text.
    const name = "web (2026) [build-7]";
    const description = "café 😀 描述 — with a tab\tand all";
    const snapshot = await writeSnapshot(kiln, new Map([[0, Buffer.alloc(512 * 1024, 7)]]), { size: 1 });
    const { ImageId } = await ec2.send(
      new RegisterImageCommand({
        Name: name,
        Description: description,
        VirtualizationType: "hvm",
        RootDeviceName: "/dev/xvda",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshot } }],
      }),
    );
    await ec2.send(new CreateStoreImageTaskCommand({ ImageId, Bucket: "bkt" }));
    for (let i = 0; ; i++) {
      const task = (await ec2.send(new DescribeStoreImageTasksCommand({ ImageIds: [ImageId!] }))).StoreImageTaskResults![0]!;
      if (task.StoreTaskState === "Completed") break;
      assert.notEqual(task.StoreTaskState, "Failed", task.StoreTaskFailureReason);
      assert.ok(i < 600, "the store task ends");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const decode = (value: string) => {
      const word = /^=\?UTF-8\?B\?([A-Za-z0-9+/=]*)\?=$/.exec(value);
      assert.ok(word, `${value} is one RFC 2047 encoded word`);
      return Buffer.from(word[1]!, "base64").toString("utf8");
    };
    const s3 = kiln.s3();
    for (const answer of [
      await s3.send(new HeadObjectCommand({ Bucket: "bkt", Key: `${ImageId}.bin` })),
      await s3.send(new GetObjectCommand({ Bucket: "bkt", Key: `${ImageId}.bin` })),
    ]) {
      assert.equal(answer.Metadata!["ami-name"], name);
      assert.equal(decode(answer.Metadata!["ami-description"]!), description);
      assert.equal(answer.Metadata!["ami-owner-account"], "000000000000");
    }
  });
});

describe("requests node:http cannot parse", () => {
  it("an EC2 GET whose query is too large answers an EC2 error body", async () => {
    const query = new URLSearchParams({ Action: "DescribeImages", Version: "2016-11-15" });
    for (let i = 1; i <= 1500; i++) query.append(`ImageId.${i}`, `ami-${String(i).padStart(17, "0")}`);
    const response = await fetch(`${kiln.url}/?${query}`);
    const text = await response.text();
    assert.equal(response.status, 400);
    assert.match(response.headers.get("content-type") ?? "", /xml/);
    assert.equal(errorCode(text), "RequestHeaderSectionTooLarge");
    assert.match(text, /<Response><Errors><Error><Code>/);
    // And the server goes on serving.
    assert.equal((await fetch(`${kiln.url}/_kiln/health`)).status, 200);
  });

  it("an S3 request with too many header bytes answers S3's XML error", async () => {
    const response = await fetch(`${kiln.url}/bkt/disk.raw`, { headers: { "x-amz-meta-big": "x".repeat(20_000) } });
    assert.equal(response.status, 400);
    assert.match(await response.text(), /<Error><Code>RequestHeaderSectionTooLarge<\/Code>/);
  });

  it("bytes that are not HTTP get a 400 with an error body", async () => {
    const answer = await rawExchange("GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n");
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /<Code>InvalidRequest<\/Code>/);
    assert.equal((await fetch(`${kiln.url}/_kiln/health`)).status, 200);
  });
});
