// Kiln's own routes and the web pages a user opens: an HTML form or a script on any page must not
// reset Kiln or shut an instance down, and must not reach the EC2, EBS or S3 APIs either (Kiln's
// default credentials are public, so a page could sign). Reset, collect and shutdown take a
// signature (shutdown: the instance's owner's) or the operator's admin token; health stays open.
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import { CreateVolumeCommand, DescribeInstancesCommand, DescribeVolumesCommand } from "@aws-sdk/client-ec2";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { launchInstances } from "./helpers/resources.js";
import { errorCode, form, presignedUrl, signedHeaders, signedRequest } from "./helpers/signed.js";

const ADMIN_TOKEN = "a-long-operator-secret";
const OTHER_ACCOUNT = "111111111111";
let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln({}, { KILN_ADMIN_TOKEN: ADMIN_TOKEN });
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

/** What a cross-site page adds to the requests it makes, as Chromium and Firefox send them. */
const FROM_PAGE = { origin: "http://evil.example", "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate" };

const volumeCount = async () => (await kiln.ec2().send(new DescribeVolumesCommand({}))).Volumes!.length;
const stateOf = async (id: string) => (await kiln.ec2().send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!.State!.Name;
const post = (path: string, init: { headers?: Record<string, string>; body?: string } = {}) =>
  fetch(`${kiln.url}${path}`, { method: "POST", ...init }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error?: string } }));

describe("reset and collect", () => {
  it("refuse a plain HTML form from another site, whatever it carries", async () => {
    await kiln.ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    // What <form method=post action=http://127.0.0.1:4566/_kiln/reset> sends.
    const form = await post("/_kiln/reset", { headers: { "content-type": "application/x-www-form-urlencoded", ...FROM_PAGE }, body: "a=b" });
    assert.deepEqual([form.status, form.body.error], [403, "Forbidden"]);
    // Older browsers send no Origin on a form post: its content type gives it away.
    for (const type of ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"]) {
      assert.equal((await post("/_kiln/reset", { headers: { "content-type": type }, body: "a=b" })).status, 403, type);
    }
    // A page's fetch() with no body still carries Sec-Fetch-Site (or Origin).
    assert.equal((await post("/_kiln/reset", { headers: { "sec-fetch-site": "same-site" } })).status, 403);
    assert.equal((await post("/_kiln/collect", { headers: { origin: "null" } })).status, 403);
    // Even signed (a page could sign with the public default keys) and with the right token.
    const signedFromPage = await signedRequest(kiln.url, { method: "POST", path: "/_kiln/reset", headers: FROM_PAGE });
    assert.equal(signedFromPage.status, 403);
    assert.equal((await post("/_kiln/reset", { headers: { "x-kiln-admin-token": ADMIN_TOKEN, ...FROM_PAGE } })).status, 403);
    assert.equal(await volumeCount(), 1, "nothing was reset");
  });

  it("refuse an unsigned request and a wrong token, and take any account's signature or the operator's token", async () => {
    await kiln.ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    const unsigned = await post("/_kiln/reset");
    assert.deepEqual([unsigned.status, unsigned.body.error], [403, "MissingAuthenticationToken"]);
    const badSecret = await signedRequest(kiln.url, { method: "POST", path: "/_kiln/reset", secretAccessKey: "wrong" });
    assert.equal(badSecret.status, 403);
    assert.equal((await post("/_kiln/reset", { headers: { "x-kiln-admin-token": "guess" } })).status, 403);
    assert.equal(await volumeCount(), 1, "nothing was reset");

    assert.equal((await kiln.admin("/_kiln/reset", { accessKeyId: OTHER_ACCOUNT })).status, 200);
    assert.equal(await volumeCount(), 0);
    await kiln.ec2().send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
    const byToken = await post("/_kiln/reset", { headers: { "x-kiln-admin-token": ADMIN_TOKEN } });
    assert.equal(byToken.status, 200);
    assert.equal(await volumeCount(), 0);
    const collected = await post("/_kiln/collect", { headers: { "x-kiln-admin-token": ADMIN_TOKEN } });
    assert.equal(collected.status, 200);
  });

  it("health and liveness stay open to anyone, pages included", async () => {
    const health = await fetch(`${kiln.url}/_kiln/health`, { headers: FROM_PAGE });
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string }).status, "running");
    const live = await fetch(`${kiln.url}/_kiln/live`, { headers: FROM_PAGE });
    assert.equal(live.status, 200);
    assert.equal(((await live.json()) as { status: string }).status, "running");
    assert.equal((await fetch(`${kiln.url}/_kiln/live`, { method: "POST" })).status, 405);
  });
});

describe("an instance's shutdown from inside", () => {
  it("is its owner's (or the operator's) to send, never another account's or a page's", async () => {
    const [id] = await launchInstances(kiln.ec2(), 1);
    assert.equal((await post(`/_kiln/instances/${id}/shutdown`)).status, 403, "unsigned");
    assert.equal((await signedRequest(kiln.url, { method: "POST", path: `/_kiln/instances/${id}/shutdown`, headers: FROM_PAGE })).status, 403, "from a page");
    const stranger = await kiln.admin(`/_kiln/instances/${id}/shutdown`, { accessKeyId: OTHER_ACCOUNT });
    assert.equal(stranger.status, 404, stranger.text);
    assert.equal(JSON.parse(stranger.text).error, "InvalidInstanceID.NotFound");
    const otherRegion = await kiln.admin(`/_kiln/instances/${id}/shutdown`, { region: "eu-west-1" });
    assert.equal(otherRegion.status, 404);
    assert.equal(await stateOf(id!), "running");

    const owner = await kiln.admin(`/_kiln/instances/${id}/shutdown`);
    assert.deepEqual([owner.status, JSON.parse(owner.text)], [200, { instanceId: id, becomes: "stopped" }]);
    assert.equal(await stateOf(id!), "stopped");

    const [second] = await launchInstances(kiln.ec2({ accessKeyId: OTHER_ACCOUNT }), 1);
    assert.equal((await post(`/_kiln/instances/${second}/shutdown`, { headers: { "x-kiln-admin-token": ADMIN_TOKEN } })).status, 200);
  });
});

describe("the APIs and web pages", () => {
  it("a page cannot reach EC2 with a signature or a presigned URL it made with the public keys", async () => {
    const body = form({ Action: "CreateVolume", Version: "2016-11-15", AvailabilityZone: "us-east-1a", Size: "1" });
    const fromPage = await signedRequest(kiln.url, { body, headers: FROM_PAGE });
    assert.deepEqual([fromPage.status, errorCode(fromPage.text)], [403, "UnauthorizedOperation"]);
    const url = await presignedUrl(kiln.url, { query: { Action: "CreateVolume", Version: "2016-11-15", AvailabilityZone: "us-east-1a", Size: "1" } });
    // What <img src=…> sends.
    const image = await fetch(url, { headers: { "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image" } });
    assert.equal(image.status, 403);
    assert.equal(await volumeCount(), 0);
    // The same requests from a tool are served.
    assert.equal((await signedRequest(kiln.url, { body })).status, 200);
    assert.equal((await fetch(url)).status, 200);
    assert.equal(await volumeCount(), 2);
  });

  it("a page cannot write to S3 or EBS, but a link or an <img> may read an object by a presigned URL", async () => {
    const s3 = kiln.s3();
    await s3.send(new CreateBucketCommand({ Bucket: "pics" }));
    await s3.send(new PutObjectCommand({ Bucket: "pics", Key: "cat.png", Body: "meow" }));
    const put = await signedRequest(kiln.url, {
      method: "PUT",
      service: "s3",
      path: "/pics/cat.png",
      body: "woof",
      contentType: "image/png",
      headers: { ...FROM_PAGE, "x-amz-content-sha256": "UNSIGNED-PAYLOAD" },
    });
    assert.deepEqual([put.status, errorCode(put.text)], [403, "AccessDenied"]);
    const ebsHeaders = await signedHeaders(kiln.url, {
      method: "POST",
      service: "ebs",
      path: "/snapshots",
      body: JSON.stringify({ VolumeSize: 1 }),
      contentType: "application/json",
    });
    const ebs = await fetch(`${kiln.url}/snapshots`, { method: "POST", headers: { ...ebsHeaders, ...FROM_PAGE }, body: JSON.stringify({ VolumeSize: 1 }) });
    assert.deepEqual([ebs.status, ebs.headers.get("x-amzn-errortype")], [403, "AccessDeniedException"]);

    const link = await getSignedUrl(s3, new GetObjectCommand({ Bucket: "pics", Key: "cat.png" }), { expiresIn: 60 });
    const read = await fetch(link, { headers: { "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" } });
    assert.deepEqual([read.status, await read.text()], [200, "meow"]);
    // A "same-origin" page on Kiln's port can only be a host name rebound to it: it may not read.
    const rebound = await fetch(link, { headers: { "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors" } });
    assert.equal(rebound.status, 403);
    assert.equal((await s3.send(new HeadObjectCommand({ Bucket: "pics", Key: "cat.png" }))).ContentLength, 4, "the object is unchanged");
  });
});

describe("a Kiln that serves unsigned requests", () => {
  it("still refuses them from a page", async () => {
    const open = await startTestKiln({ allowUnsigned: true });
    try {
      const body = form({ Action: "CreateVolume", Version: "2016-11-15", AvailabilityZone: "us-east-1a", Size: "1" });
      const headers = { "content-type": "application/x-www-form-urlencoded" };
      const fromPage = await fetch(open.url, { method: "POST", headers: { ...headers, ...FROM_PAGE }, body });
      assert.equal(fromPage.status, 403);
      assert.equal((await fetch(`${open.url}/_kiln/reset`, { method: "POST", headers: FROM_PAGE })).status, 403);
      assert.equal((await fetch(open.url, { method: "POST", headers, body })).status, 200);
      // Unsigned is the default account: it may reset, as a signed request may.
      assert.equal((await fetch(`${open.url}/_kiln/reset`, { method: "POST" })).status, 200);
    } finally {
      await open.close();
    }
  });
});
