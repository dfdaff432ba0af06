// Signature V4: header and presigned forms, every way a signature can fail, and the accounts
// that credentials map to.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { CreateTagsCommand, DescribeTagsCommand } from "@aws-sdk/client-ec2";
import { errorCode, form, presignedUrl, signedHeaders, signedRequest } from "./helpers/signed.js";
import { createVolumes } from "./helpers/resources.js";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";

const DESCRIBE = form({ Action: "DescribeRegions", Version: "2016-11-15" });

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());

async function fails(response: Promise<{ status: number; text: string }>, status: number, code: string) {
  const r = await response;
  assert.equal(errorCode(r.text), code, r.text);
  assert.equal(r.status, status);
}

describe("header signatures", () => {
  it("accepts a correct signature", async () => {
    assert.equal((await signedRequest(kiln.url, { body: DESCRIBE })).status, 200);
  });

  it("SignatureDoesNotMatch for a wrong secret, or a body changed after signing", async () => {
    await fails(signedRequest(kiln.url, { body: DESCRIBE, secretAccessKey: "not-test" }), 403, "SignatureDoesNotMatch");
    const url = new URL(kiln.url);
    const { SignatureV4 } = await import("@smithy/signature-v4");
    const { Hash } = await import("@smithy/hash-node");
    const signer = new SignatureV4({
      credentials: { accessKeyId: "test", secretAccessKey: "test" },
      region: "us-east-1",
      service: "ec2",
      sha256: Hash.bind(null, "sha256"),
    });
    const signed = await signer.sign({
      method: "POST",
      protocol: "http:",
      hostname: url.hostname,
      port: Number(url.port),
      path: "/",
      query: {},
      headers: { host: url.host, "content-type": "application/x-www-form-urlencoded" },
      body: DESCRIBE,
    });
    const headers = { ...signed.headers } as Record<string, string>;
    delete headers.host;
    const tampered = await fetch(`${kiln.url}/`, {
      method: "POST",
      headers,
      body: form({ Action: "DescribeRegions", Version: "2016-11-15", AllRegions: "true" }),
    });
    assert.equal(errorCode(await tampered.text()), "SignatureDoesNotMatch");
  });

  it("AuthFailure (401) for an access key Kiln does not know", async () => {
    await fails(signedRequest(kiln.url, { body: DESCRIBE, accessKeyId: "AKIAUNKNOWN" }), 401, "AuthFailure");
    // A 12-digit key is its own account only with the secret `test`.
    await fails(signedRequest(kiln.url, { body: DESCRIBE, accessKeyId: "123456789012", secretAccessKey: "other" }), 403, "SignatureDoesNotMatch");
  });

  it("RequestExpired when the signature's time is more than 5 minutes off", async () => {
    await fails(signedRequest(kiln.url, { body: DESCRIBE, signingDate: new Date(Date.now() - 6 * 60_000) }), 400, "RequestExpired");
    await fails(signedRequest(kiln.url, { body: DESCRIBE, signingDate: new Date(Date.now() + 6 * 60_000) }), 400, "RequestExpired");
    assert.equal((await signedRequest(kiln.url, { body: DESCRIBE, signingDate: new Date(Date.now() - 4 * 60_000) })).status, 200);
  });

  it("IncompleteSignature for a malformed Authorization header", async () => {
    const post = (authorization: string, extra: Record<string, string> = {}) =>
      fetch(`${kiln.url}/`, {
        method: "POST",
        headers: { authorization, "x-amz-date": "20261123T000000Z", "content-type": "application/x-www-form-urlencoded", ...extra },
        body: DESCRIBE,
      }).then(async (r) => ({ status: r.status, text: await r.text() }));
    await fails(post("AWS4-HMAC-SHA256 Credential=test/20261123/us-east-1/ec2/aws4_request, SignedHeaders=host"), 400, "IncompleteSignature");
    await fails(post("AWS4-HMAC-SHA256 Credential=test/20261123/ec2/aws4_request, SignedHeaders=host, Signature=00"), 400, "IncompleteSignature");
    await fails(post("AWS AKIA:signature"), 400, "IncompleteSignature");
  });

  it("MissingAuthenticationToken for an unsigned request", async () => {
    await fails(
      fetch(`${kiln.url}/?Action=DescribeRegions&Version=2016-11-15`).then(async (r) => ({ status: r.status, text: await r.text() })),
      403,
      "MissingAuthenticationToken",
    );
  });
});

describe("the signature's scope", () => {
  const describeRegions = form({ Action: "DescribeRegions", Version: "2016-11-15" });

  it("a request signed for another service is refused where it arrives", async () => {
    for (const service of ["iam", "sts", "ebs"]) {
      const response = await signedRequest(kiln.url, { body: describeRegions, service });
      assert.equal(response.status, 403, service);
      assert.equal(errorCode(response.text), "SignatureDoesNotMatch");
      assert.match(response.text, /Credential should be scoped to correct service: &apos;ec2&apos;/);
    }
    const atEbs = await signedRequest(kiln.url, {
      method: "POST",
      path: "/snapshots",
      service: "ec2",
      body: JSON.stringify({ VolumeSize: 1 }),
      contentType: "application/json",
    });
    assert.deepEqual([atEbs.status, atEbs.headers.get("x-amzn-errortype")], [403, "SignatureDoesNotMatch"]);
    // A bucket addressed by host goes to S3, whatever the signature says.
    const headers = await signedHeaders(kiln.url, { path: "/", service: "ec2", headers: { host: "pics.localhost" } });
    const s3 = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(`${kiln.url}/`, { headers }, (res) => {
        let text = "";
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => resolve({ status: res.statusCode!, text }));
      });
      req.on("error", reject);
      req.end();
    });
    assert.deepEqual([s3.status, errorCode(s3.text)], [400, "AuthorizationHeaderMalformed"]);
    assert.match(s3.text, /incorrect service &apos;ec2&apos;/);
  });

  it("a region Kiln does not serve is refused, and leaves nothing behind", async () => {
    const tables = ["images", "vpcs", "volumes", "buckets"] as const;
    const rowsIn = async (region: string) => {
      let rows = 0;
      for (const table of tables) rows += (await kiln.kiln.meta.db.selectFrom(table).select("region").where("region", "=", region).execute()).length;
      return rows;
    };
    const ec2 = await signedRequest(kiln.url, {
      body: form({ Action: "CreateVolume", Version: "2016-11-15", AvailabilityZone: "mars-north-1a", Size: "1" }),
      region: "mars-north-1",
    });
    assert.deepEqual([ec2.status, errorCode(ec2.text)], [403, "SignatureDoesNotMatch"]);
    assert.match(ec2.text, /scoped to a valid region, not &apos;mars-north-1&apos;/);
    const presigned = await fetch(await presignedUrl(kiln.url, { query: { Action: "DescribeImages", Version: "2016-11-15" }, region: "mars-north-1" }));
    assert.equal(presigned.status, 403);
    const ebs = await signedRequest(kiln.url, {
      method: "POST",
      path: "/snapshots",
      service: "ebs",
      region: "mars-north-1",
      body: JSON.stringify({ VolumeSize: 1 }),
      contentType: "application/json",
    });
    assert.equal(ebs.status, 403);
    const s3 = await signedRequest(kiln.url, {
      method: "PUT",
      path: "/marsbucket",
      service: "s3",
      region: "mars-north-1",
      headers: { "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
    });
    assert.deepEqual([s3.status, errorCode(s3.text)], [400, "AuthorizationHeaderMalformed"]);
    assert.equal(await rowsIn("mars-north-1"), 0);
    // An opt-in region is served, as the catalogue and network show.
    assert.equal(
      (await signedRequest(kiln.url, { body: form({ Action: "DescribeImages", Version: "2016-11-15", "Owner.1": "amazon" }), region: "af-south-1" })).status,
      200,
    );
    assert.ok((await rowsIn("af-south-1")) > 0);
  });
});

describe("presigned URLs", () => {
  it("accepts a valid presigned GET", async () => {
    const url = await presignedUrl(kiln.url, { query: { Action: "DescribeRegions", Version: "2016-11-15", "RegionName.1": "eu-west-2" } });
    const response = await fetch(url);
    const text = await response.text();
    assert.equal(response.status, 200, text);
    assert.match(text, /<regionName>eu-west-2<\/regionName>/);
  });

  it("RequestExpired once X-Amz-Expires has passed", async () => {
    const url = await presignedUrl(kiln.url, {
      query: { Action: "DescribeRegions", Version: "2016-11-15" },
      signingDate: new Date(Date.now() - 120_000),
      expiresIn: 60,
    });
    const response = await fetch(url);
    assert.equal(errorCode(await response.text()), "RequestExpired");
    assert.equal(response.status, 400);
  });

  it("SignatureDoesNotMatch when a parameter is changed", async () => {
    const url = await presignedUrl(kiln.url, { query: { Action: "DescribeRegions", Version: "2016-11-15", "RegionName.1": "eu-west-2" } });
    const response = await fetch(url.replace("eu-west-2", "eu-west-3"));
    assert.equal(errorCode(await response.text()), "SignatureDoesNotMatch");
  });
});

describe("accounts", () => {
  it("maps any 12-digit access key with secret `test` to that account, and region to the scope", async () => {
    const a = kiln.ec2({ accessKeyId: "222222222222", region: "ap-south-1" });
    const [volume] = await createVolumes(a, 1);
    await a.send(new CreateTagsCommand({ Resources: [volume!], Tags: [{ Key: "k", Value: "v" }] }));
    assert.equal((await a.send(new DescribeTagsCommand({}))).Tags!.length, 1);
    assert.equal((await kiln.ec2({ region: "ap-south-1" }).send(new DescribeTagsCommand({}))).Tags!.length, 0);
  });

  it("a configured account list replaces the defaults", async () => {
    const file = join(tempDir(), "accounts.json");
    writeFileSync(file, JSON.stringify({ accounts: [{ accountId: "444455556666", accessKeyId: "AKIAOPERATOR", secretAccessKey: "s3cret" }] }));
    const configured = await startTestKiln({ accountsFile: file });
    try {
      assert.equal((await signedRequest(configured.url, { body: DESCRIBE, accessKeyId: "AKIAOPERATOR", secretAccessKey: "s3cret" })).status, 200);
      await fails(signedRequest(configured.url, { body: DESCRIBE }), 401, "AuthFailure");
      await fails(signedRequest(configured.url, { body: DESCRIBE, accessKeyId: "123456789012" }), 401, "AuthFailure");
    } finally {
      await configured.close();
    }
  });

  it("serves unsigned requests only when the operator allows them, as the default account", async () => {
    const open = await startTestKiln({ allowUnsigned: true });
    try {
      const [volume] = await createVolumes(open.ec2(), 1);
      const created = await fetch(`${open.url}/?Action=CreateTags&Version=2016-11-15&ResourceId.1=${volume}&Tag.1.Key=k&Tag.1.Value=v`);
      assert.equal(created.status, 200, await created.text());
      // The tag belongs to account 000000000000 in the default region, where the volume is.
      const seen = await open.ec2().send(new DescribeTagsCommand({}));
      assert.deepEqual(
        seen.Tags!.map((t) => t.ResourceId),
        [volume],
      );
      // Signed requests are still verified.
      await fails(signedRequest(open.url, { body: DESCRIBE, secretAccessKey: "wrong" }), 403, "SignatureDoesNotMatch");
    } finally {
      await open.close();
    }
  });
});
