// The EC2 Query protocol on the wire, with hand-made signed requests: each way of sending
// parameters, every request-level error, the limits, and JSON answers.
import assert from "node:assert/strict";
import { Agent, request as httpRequest } from "node:http";
import { after, before, describe, it } from "node:test";
import { ListSnapshotBlocksCommand } from "@aws-sdk/client-ebs";
import { ListBucketsCommand } from "@aws-sdk/client-s3";
import { errorCode, form, signedRequest } from "./helpers/signed.js";
import { createVolumes } from "./helpers/resources.js";
import { startTestKiln, testDatabaseUrl, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

async function expectError(response: { status: number; text: string; headers: Headers }, status: number, code: string, message?: RegExp) {
  assert.equal(response.status, status, response.text);
  assert.match(response.headers.get("content-type") ?? "", /^text\/xml/);
  assert.equal(errorCode(response.text), code, response.text);
  const requestId = /<RequestID>([^<]+)<\/RequestID>/.exec(response.text)?.[1];
  assert.match(requestId ?? "", UUID);
  assert.equal(response.headers.get("x-amzn-requestid"), requestId);
  if (message) assert.match(response.text, message);
}

describe("ways to send parameters", () => {
  it("takes a GET query string", async () => {
    const response = await signedRequest(kiln.url, { query: { Action: "DescribeRegions", Version: "2016-11-15", "RegionName.1": "eu-west-1" } });
    assert.equal(response.status, 200);
    assert.match(
      response.text,
      /^<\?xml version="1\.0" encoding="UTF-8"\?>\n<DescribeRegionsResponse xmlns="http:\/\/ec2\.amazonaws\.com\/doc\/2016-11-15\/"><requestId>[-0-9a-f]{36}<\/requestId><regionInfo><item><optInStatus>opt-in-not-required<\/optInStatus><regionName>eu-west-1<\/regionName><regionEndpoint>ec2\.eu-west-1\.amazonaws\.com<\/regionEndpoint><\/item><\/regionInfo><\/DescribeRegionsResponse>$/,
    );
  });

  it("takes a form-encoded POST", async () => {
    const response = await signedRequest(kiln.url, { body: form({ Action: "DescribeAvailabilityZones", Version: "2016-11-15", "ZoneName.1": "us-east-1c" }) });
    assert.equal(response.status, 200);
    assert.match(response.text, /<availabilityZoneInfo><item>.*<zoneName>us-east-1c<\/zoneName>.*<\/item><\/availabilityZoneInfo>/);
  });

  it("takes an XML body whose root names the action and whose elements are member names", async () => {
    const [volume] = await createVolumes(kiln.ec2(), 1);
    const create = await signedRequest(kiln.url, {
      body: `<CreateTags><Resources><item>${volume}</item></Resources><Tags><item><Key>via</Key><Value>xml</Value></item></Tags></CreateTags>`,
      contentType: "text/xml",
    });
    assert.equal(create.status, 200, create.text);
    assert.match(create.text, /<return>true<\/return>/);
    const describe = await signedRequest(kiln.url, {
      query: { Action: "DescribeTags", Version: "2016-11-15" },
      body: "<DescribeTagsRequest><Filters><item><Name>key</Name><Values><item>via</Item></Values></item></Filters></DescribeTagsRequest>".replace(
        "</Item>",
        "</item>",
      ),
      contentType: "application/xml",
    });
    assert.equal(describe.status, 200, describe.text);
    assert.ok(describe.text.includes(`<resourceId>${volume}</resourceId><resourceType>volume</resourceType><value>xml</value>`), describe.text);
  });

  it("takes a JSON body of member names", async () => {
    const response = await signedRequest(kiln.url, {
      body: JSON.stringify({ Action: "DescribeRegions", Version: "2016-11-15", RegionNames: ["us-east-2"], AllRegions: true }),
      contentType: "application/json",
    });
    assert.equal(response.status, 200, response.text);
    assert.match(response.text, /<regionName>us-east-2<\/regionName>/);
    assert.doesNotMatch(response.text, /us-east-1/);
  });

  it("resolves member names and wire names alike", async () => {
    const byWire = await signedRequest(kiln.url, {
      body: form({ Action: "DescribeRegions", Version: "2016-11-15", "Filter.1.Name": "region-name", "Filter.1.Value.1": "us-west-1" }),
    });
    const byMember = await signedRequest(kiln.url, {
      body: form({ Action: "DescribeRegions", Version: "2016-11-15", "Filters.1.Name": "region-name", "Filters.1.Values.1": "us-west-1" }),
    });
    assert.equal(byWire.status, 200);
    assert.equal(byMember.text.replace(/<requestId>.*<\/requestId>/, ""), byWire.text.replace(/<requestId>.*<\/requestId>/, ""));
  });

  it("answers JSON when the caller accepts application/json", async () => {
    const response = await signedRequest(kiln.url, {
      body: form({ Action: "DescribeRegions", Version: "2016-11-15", "RegionName.1": "sa-east-1" }),
      headers: { accept: "application/json" },
    });
    assert.equal(response.status, 200);
    assert.match(response.headers.get("content-type")!, /^application\/json/);
    const body = JSON.parse(response.text);
    assert.match(body.RequestId, UUID);
    assert.deepEqual(body.Regions, [{ Endpoint: "ec2.sa-east-1.amazonaws.com", RegionName: "sa-east-1", OptInStatus: "opt-in-not-required" }]);
    const error = await signedRequest(kiln.url, {
      body: form({ Action: "DescribeRegions", Version: "2016-11-15", Bogus: "1" }),
      headers: { accept: "application/json" },
    });
    assert.equal(error.status, 400);
    assert.deepEqual(JSON.parse(error.text).Errors, [{ Code: "UnknownParameter", Message: "The parameter Bogus is not recognized" }]);
  });
});

describe("request errors", () => {
  const call = (params: Record<string, string>) => signedRequest(kiln.url, { body: form({ Version: "2016-11-15", ...params }) });

  it("MissingAction without an Action", async () => {
    await expectError(await call({}), 400, "MissingAction");
  });

  it("InvalidAction for a name that is no EC2 action", async () => {
    await expectError(await call({ Action: "MakeCoffee" }), 400, "InvalidAction", /MakeCoffee/);
  });

  it("UnsupportedOperation for an EC2 action Kiln does not serve yet", async () => {
    await expectError(await call({ Action: "DescribeVpcEndpoints" }), 400, "UnsupportedOperation", /DescribeVpcEndpoints/);
  });

  it("NoSuchVersion for another API version", async () => {
    await expectError(await signedRequest(kiln.url, { body: form({ Action: "DescribeRegions", Version: "2099-01-01" }) }), 400, "NoSuchVersion");
  });

  it("UnknownParameter, MissingParameter and InvalidParameterValue", async () => {
    await expectError(await call({ Action: "DescribeRegions", RegionNamez: "x" }), 400, "UnknownParameter", /RegionNamez/);
    await expectError(await call({ Action: "CreateTags", "Tag.1.Key": "a" }), 400, "MissingParameter", /ResourceId/);
    await expectError(await call({ Action: "DescribeRegions", AllRegions: "maybe" }), 400, "InvalidParameterValue", /AllRegions/);
    await expectError(await call({ Action: "DescribeTags", MaxResults: "ten" }), 400, "InvalidParameterValue", /MaxResults/);
    await expectError(await call({ Action: "DescribeTags", "Filter.0.Name": "key" }), 400, "InvalidParameterValue", /index/);
  });

  it("InvalidParameterCombination for one value given twice", async () => {
    await expectError(await call({ Action: "DescribeRegions", "RegionName.1": "a", "RegionNames.1": "b" }), 400, "InvalidParameterCombination");
  });

  it("DryRunOperation with HTTP 412", async () => {
    await expectError(
      await call({ Action: "DescribeAccountAttributes", DryRun: "true" }),
      412,
      "DryRunOperation",
      /Request would have succeeded, but DryRun flag is set\./,
    );
  });

  it("refuses a 10 MB body before reading it, and keeps serving", async () => {
    const huge = "A".repeat(10 * 1024 * 1024);
    const response = await new Promise<{ status: number; text: string; headers: Headers }>((resolve, reject) => {
      const url = new URL(kiln.url);
      const req = httpRequest(
        {
          host: url.hostname,
          port: url.port,
          method: "POST",
          path: "/",
          headers: { "content-type": "application/x-www-form-urlencoded", "content-length": huge.length },
        },
        (res) => {
          let text = "";
          res.on("data", (c) => (text += c));
          res.on("end", () => resolve({ status: res.statusCode!, text, headers: new Headers(res.headers as Record<string, string>) }));
        },
      );
      req.on("error", (error: NodeJS.ErrnoException) => (error.code === "EPIPE" || error.code === "ECONNRESET" ? undefined : reject(error)));
      req.end(huge);
    });
    await expectError(response, 413, "RequestEntityTooLarge");
    const after = await call({ Action: "DescribeRegions" });
    assert.equal(after.status, 200);
  });

  it("refuses absurd parameter counts", async () => {
    const params: Record<string, string> = { Action: "CreateTags", "Tag.1.Key": "k" };
    for (let i = 1; i <= 10_001; i++) params[`ResourceId.${i}`] = "i-1";
    await expectError(await signedRequest(kiln.url, { body: form(params) }), 400, "InvalidRequest", /more than 10000 parameters/);
  });

  it("refuses bodies in a content type it cannot read, and malformed XML and JSON", async () => {
    await expectError(await signedRequest(kiln.url, { body: "x", contentType: "application/octet-stream" }), 400, "InvalidRequest", /Content-Type/);
    await expectError(await signedRequest(kiln.url, { body: "<DescribeRegions><a></DescribeRegions>", contentType: "text/xml" }), 400, "InvalidRequest");
    await expectError(await signedRequest(kiln.url, { body: "{nope", contentType: "application/json" }), 400, "InvalidRequest");
  });

  it("answers EC2 XML, never HTML, for paths it does not serve", async () => {
    const response = await fetch(`${kiln.url}/favicon.ico`);
    await expectError({ status: response.status, text: await response.text(), headers: response.headers }, 404, "NotFound");
  });
});

describe("Kiln's own routes", () => {
  it("reports health with the version", async () => {
    const response = await fetch(`${kiln.url}/_kiln/health`);
    assert.equal(response.status, 200);
    const health = (await response.json()) as { status: string; version: string; ec2ApiVersion: string; store: { metadata: string } };
    assert.equal(health.status, "running");
    // The suite runs on SQLite, and on PostgreSQL when KILN_TEST_DATABASE_URL names a server.
    assert.equal(health.store.metadata, testDatabaseUrl ? "postgres" : "sqlite");
    assert.match(health.version, /^\d+\.\d+\.\d+/);
    assert.equal(health.ec2ApiVersion, "2016-11-15");
  });

  it("keeps an idle connection open across a pause of several seconds, so a reused one is not reset", async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<boolean>((resolve, reject) => {
        const req = httpRequest(`${kiln.url}/_kiln/health`, { agent }, (res) => {
          res.resume();
          res.on("end", () => resolve(req.reusedSocket));
        });
        req.on("error", reject).end();
      });
    assert.equal(await get(), false);
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal(await get(), true, "the server closed the idle connection");
    agent.destroy();
  });

  it("resets state on POST only", async () => {
    const [volume] = await createVolumes(kiln.ec2(), 1);
    const tagged = await signedRequest(kiln.url, {
      body: form({ Action: "CreateTags", Version: "2016-11-15", "ResourceId.1": volume!, "Tag.1.Key": "k", "Tag.1.Value": "v" }),
    });
    assert.equal(tagged.status, 200, tagged.text);
    assert.equal((await fetch(`${kiln.url}/_kiln/reset`)).status, 405);
    assert.equal((await kiln.admin("/_kiln/reset")).status, 200);
    const tags = await signedRequest(kiln.url, { body: form({ Action: "DescribeTags", Version: "2016-11-15" }) });
    assert.match(tags.text, /<tagSet\/>/);
    assert.match((await signedRequest(kiln.url, { body: form({ Action: "DescribeVolumes", Version: "2016-11-15" }) })).text, /<volumeSet\/>/);
  });
});

describe("failures Kiln did not expect", () => {
  it("answers each protocol's own internal error, with no stack trace", async () => {
    const broken = await startTestKiln();
    // The metadata store closed under a running server: every request that needs it fails.
    await broken.kiln.meta.close();
    try {
      const ec2 = await signedRequest(broken.url, { body: form({ Action: "DescribeVolumes", Version: "2016-11-15" }) });
      assert.equal(ec2.status, 500);
      assert.equal(errorCode(ec2.text), "InternalError");
      assert.doesNotMatch(ec2.text, /at |Error:/, "no stack trace on the wire");

      const ebs = await broken
        .ebs()
        .send(new ListSnapshotBlocksCommand({ SnapshotId: "snap-0123456789abcdef0" }))
        .then(
          () => assert.fail("ListSnapshotBlocks succeeded"),
          (error: { name: string; $metadata: { httpStatusCode?: number } }) => error,
        );
      assert.equal(ebs.name, "InternalServerException");
      assert.equal(ebs.$metadata.httpStatusCode, 500);

      const s3 = await broken
        .s3()
        .send(new ListBucketsCommand({}))
        .then(
          () => assert.fail("ListBuckets succeeded"),
          (error: { name: string; $metadata: { httpStatusCode?: number } }) => error,
        );
      assert.equal(s3.name, "InternalError");
      assert.equal(s3.$metadata.httpStatusCode, 500);
    } finally {
      await broken.kiln.close().catch(() => {});
    }
  });
});
