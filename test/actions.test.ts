// The first actions, called through @aws-sdk/client-ec2 against a real Kiln.
import assert from "node:assert/strict";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CreateTagsCommand,
  DeleteTagsCommand,
  DescribeAccountAttributesCommand,
  DescribeVpcsCommand,
  DescribeAvailabilityZonesCommand,
  DescribeRegionsCommand,
  DescribeTagsCommand,
  paginateDescribeTags,
  type EC2Client,
  type TagDescription,
} from "@aws-sdk/client-ec2";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { catalogueImage, createSnapshot, createVolumes, launchInstances } from "./helpers/resources.js";

let kiln: TestKiln;
let ec2: EC2Client;

before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
});
after(() => kiln.close());

/** Resolves to the error's name (its EC2 code); fails when the call succeeds. */
async function errorOf(promise: Promise<unknown>): Promise<{ name: string; status?: number; message: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { name: string; message: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  assert.fail("the call succeeded");
}

describe("DescribeRegions", () => {
  it("lists the enabled regions with endpoints", async () => {
    const { Regions } = await ec2.send(new DescribeRegionsCommand({}));
    const names = Regions!.map((r) => r.RegionName);
    assert.ok(names.includes("us-east-1") && names.includes("eu-west-1"));
    assert.ok(!names.includes("af-south-1"), "opt-in regions appear only with AllRegions");
    const use1 = Regions!.find((r) => r.RegionName === "us-east-1")!;
    assert.deepEqual(use1, { RegionName: "us-east-1", Endpoint: "ec2.us-east-1.amazonaws.com", OptInStatus: "opt-in-not-required" });
  });

  it("includes opt-in regions with AllRegions, and filters", async () => {
    const all = await ec2.send(new DescribeRegionsCommand({ AllRegions: true }));
    assert.equal(all.Regions!.find((r) => r.RegionName === "af-south-1")?.OptInStatus, "not-opted-in");
    const filtered = await ec2.send(new DescribeRegionsCommand({ AllRegions: true, Filters: [{ Name: "region-name", Values: ["eu-*"] }] }));
    assert.ok(filtered.Regions!.length >= 5);
    assert.ok(filtered.Regions!.every((r) => r.RegionName!.startsWith("eu-")));
    const named = await ec2.send(new DescribeRegionsCommand({ RegionNames: ["us-west-2", "ap-south-1"] }));
    assert.deepEqual(named.Regions!.map((r) => r.RegionName).sort(), ["ap-south-1", "us-west-2"]);
  });

  it("refuses an unknown region name and an unknown filter", async () => {
    const unknown = await errorOf(ec2.send(new DescribeRegionsCommand({ RegionNames: ["mars-north-1"] })));
    assert.equal(unknown.name, "InvalidParameterValue");
    assert.match(unknown.message, /mars-north-1/);
    const filter = await errorOf(ec2.send(new DescribeRegionsCommand({ Filters: [{ Name: "colour", Values: ["red"] }] })));
    assert.equal(filter.name, "InvalidParameterValue");
  });

  it("answers DryRunOperation (412) when DryRun is set", async () => {
    const error = await errorOf(ec2.send(new DescribeRegionsCommand({ DryRun: true })));
    assert.equal(error.name, "DryRunOperation");
    assert.equal(error.status, 412);
  });
});

describe("DescribeAvailabilityZones", () => {
  it("lists the zones of the signed region", async () => {
    const { AvailabilityZones } = await kiln.ec2({ region: "eu-west-1" }).send(new DescribeAvailabilityZonesCommand({}));
    assert.deepEqual(
      AvailabilityZones!.map((z) => z.ZoneName),
      ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
    );
    assert.deepEqual(AvailabilityZones![0], {
      OptInStatus: "opt-in-not-required",
      Messages: [],
      RegionName: "eu-west-1",
      ZoneName: "eu-west-1a",
      ZoneId: "euw1-az1",
      GroupName: "eu-west-1",
      GroupLongName: "eu-west-1",
      NetworkBorderGroup: "eu-west-1",
      ZoneType: "availability-zone",
      State: "available",
    });
    const use1 = await ec2.send(new DescribeAvailabilityZonesCommand({}));
    assert.equal(use1.AvailabilityZones!.length, 6);
  });

  it("selects by name, id and filter", async () => {
    const byName = await ec2.send(new DescribeAvailabilityZonesCommand({ ZoneNames: ["us-east-1b"] }));
    assert.deepEqual(
      byName.AvailabilityZones!.map((z) => z.ZoneId),
      ["use1-az2"],
    );
    const byId = await ec2.send(new DescribeAvailabilityZonesCommand({ ZoneIds: ["use1-az3"] }));
    assert.deepEqual(
      byId.AvailabilityZones!.map((z) => z.ZoneName),
      ["us-east-1c"],
    );
    const filtered = await ec2.send(new DescribeAvailabilityZonesCommand({ Filters: [{ Name: "zone-name", Values: ["us-east-1a", "us-east-1f"] }] }));
    assert.deepEqual(
      filtered.AvailabilityZones!.map((z) => z.ZoneName),
      ["us-east-1a", "us-east-1f"],
    );
  });

  it("refuses a zone of another region", async () => {
    const error = await errorOf(ec2.send(new DescribeAvailabilityZonesCommand({ ZoneNames: ["eu-west-1a"] })));
    assert.equal(error.name, "InvalidParameterValue");
    assert.match(error.message, /eu-west-1a/);
  });
});

describe("DescribeAccountAttributes", () => {
  it("reports the account's attributes, all or by name", async () => {
    const all = await ec2.send(new DescribeAccountAttributesCommand({}));
    const byName = Object.fromEntries(all.AccountAttributes!.map((a) => [a.AttributeName, a.AttributeValues!.map((v) => v.AttributeValue)]));
    assert.deepEqual(byName["supported-platforms"], ["VPC"]);
    assert.deepEqual(byName["max-instances"], ["20"]);
    const one = await ec2.send(new DescribeAccountAttributesCommand({ AttributeNames: ["default-vpc"] }));
    // The default VPC is made on first use, so the account always reports it.
    const vpcs = await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }));
    assert.match(vpcs.Vpcs![0]!.VpcId!, /^vpc-[0-9a-f]{17}$/);
    assert.deepEqual(one.AccountAttributes, [{ AttributeName: "default-vpc", AttributeValues: [{ AttributeValue: vpcs.Vpcs![0]!.VpcId }] }]);
  });

  it("refuses an attribute name outside the model's enum", async () => {
    const error = await errorOf(ec2.send(new DescribeAccountAttributesCommand({ AttributeNames: ["max-bananas" as "default-vpc"] })));
    assert.equal(error.name, "InvalidParameterValue");
    assert.match(error.message, /max-bananas/);
  });
});

describe("tags", () => {
  beforeEach(() => kiln.reset());

  it("creates, describes and deletes tags on several resources", async () => {
    const image = await catalogueImage(ec2);
    const [instance] = await launchInstances(ec2, 1);
    await ec2.send(
      new CreateTagsCommand({
        Resources: [image, instance!],
        Tags: [
          { Key: "Name", Value: "web" },
          { Key: "env", Value: "prod" },
        ],
      }),
    );
    const { Tags } = await ec2.send(new DescribeTagsCommand({}));
    assert.deepEqual(Tags, [
      { Key: "Name", ResourceId: image, ResourceType: "image", Value: "web" },
      { Key: "env", ResourceId: image, ResourceType: "image", Value: "prod" },
      { Key: "Name", ResourceId: instance, ResourceType: "instance", Value: "web" },
      { Key: "env", ResourceId: instance, ResourceType: "instance", Value: "prod" },
    ]);
    // Setting a key again replaces its value.
    await ec2.send(new CreateTagsCommand({ Resources: [instance!], Tags: [{ Key: "env", Value: "dev" }] }));
    const envs = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "key", Values: ["env"] }] }));
    assert.deepEqual(
      envs.Tags!.map((t) => `${t.ResourceId}=${t.Value}`),
      [`${image}=prod`, `${instance}=dev`],
    );

    await ec2.send(new DeleteTagsCommand({ Resources: [image] }));
    const left = await ec2.send(new DescribeTagsCommand({}));
    assert.deepEqual(
      left.Tags!.map((t) => `${t.ResourceId}:${t.Key}`),
      [`${instance}:Name`, `${instance}:env`],
    );
  });

  it("refuses tags on resources that do not exist, or are another account's", async () => {
    const [volume] = await createVolumes(ec2, 1);
    const other = kiln.ec2({ accessKeyId: "111111111111" });
    const tag = [{ Key: "k", Value: "v" }];
    const absent = await errorOf(ec2.send(new CreateTagsCommand({ Resources: [volume!, "i-0123456789abcdef0"], Tags: tag })));
    assert.equal(absent.name, "InvalidInstanceID.NotFound");
    assert.match(absent.message, /i-0123456789abcdef0/);
    assert.equal((await errorOf(ec2.send(new CreateTagsCommand({ Resources: ["ami-0123456789abcdef0"], Tags: tag })))).name, "InvalidAMIID.NotFound");
    assert.equal((await errorOf(ec2.send(new CreateTagsCommand({ Resources: ["snap-0123456789abcdef0"], Tags: tag })))).name, "InvalidSnapshot.NotFound");
    assert.equal((await errorOf(other.send(new CreateTagsCommand({ Resources: [volume!], Tags: tag })))).name, "InvalidVolume.NotFound");
    // Nothing of a refused call is written, not even on the resource that exists.
    assert.deepEqual((await ec2.send(new DescribeTagsCommand({}))).Tags, []);
    // A public image can be tagged by anyone; the tags are the tagger's alone.
    const image = await catalogueImage(other);
    await other.send(new CreateTagsCommand({ Resources: [image], Tags: tag }));
    assert.deepEqual(
      (await other.send(new DescribeTagsCommand({}))).Tags!.map((t) => t.ResourceId),
      [image],
    );
    assert.deepEqual((await ec2.send(new DescribeTagsCommand({}))).Tags, []);
  });

  it("deletes a key only where the given value matches", async () => {
    const [first, second] = await createVolumes(ec2, 2);
    await ec2.send(new CreateTagsCommand({ Resources: [first!, second!], Tags: [{ Key: "team", Value: "a" }] }));
    await ec2.send(
      new CreateTagsCommand({
        Resources: [second!],
        Tags: [
          { Key: "team", Value: "b" },
          { Key: "empty", Value: "" },
        ],
      }),
    );
    await ec2.send(new DeleteTagsCommand({ Resources: [first!, second!], Tags: [{ Key: "team", Value: "a" }] }));
    await ec2.send(new DeleteTagsCommand({ Resources: [second!], Tags: [{ Key: "empty", Value: "not-empty" }] }));
    const { Tags } = await ec2.send(new DescribeTagsCommand({}));
    assert.deepEqual(
      Tags!.map((t) => `${t.ResourceId}:${t.Key}=${t.Value}`),
      [`${second}:empty=`, `${second}:team=b`],
    );
    await ec2.send(new DeleteTagsCommand({ Resources: [second!], Tags: [{ Key: "empty", Value: "" }, { Key: "team" }] }));
    assert.deepEqual((await ec2.send(new DescribeTagsCommand({}))).Tags, []);
  });

  it("DeleteTags refuses malformed ids and a missing resource list, deleting nothing", async () => {
    const [volume] = await createVolumes(ec2, 1);
    await ec2.send(new CreateTagsCommand({ Resources: [volume!], Tags: [{ Key: "keep", Value: "me" }] }));
    const malformed = await errorOf(ec2.send(new DeleteTagsCommand({ Resources: [volume!, "instance-1"] })));
    assert.equal(malformed.name, "InvalidID");
    assert.match(malformed.message, /instance-1/);
    const missing = await errorOf(ec2.send(new DeleteTagsCommand({ Resources: [] })));
    assert.equal(missing.name, "MissingParameter");
    assert.equal((await ec2.send(new DescribeTagsCommand({}))).Tags!.length, 1);
  });

  it("filters by resource type, resource id, value, tag:key and wildcards", async () => {
    const snapshot = await createSnapshot(ec2);
    const [instance] = await launchInstances(ec2, 1);
    await ec2.send(
      new CreateTagsCommand({
        Resources: [snapshot, instance!],
        Tags: [
          { Key: "owner", Value: "alice" },
          { Key: "cost-centre", Value: "42" },
        ],
      }),
    );
    const bySnapshot = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-type", Values: ["snapshot"] }] }));
    assert.deepEqual(
      bySnapshot.Tags!.map((t) => t.Key),
      ["cost-centre", "owner"],
    );
    const combined = await ec2.send(
      new DescribeTagsCommand({
        Filters: [
          { Name: "resource-id", Values: [instance!] },
          { Name: "value", Values: ["ali?e"] },
        ],
      }),
    );
    assert.deepEqual(
      combined.Tags!.map((t) => `${t.ResourceId}:${t.Key}`),
      [`${instance}:owner`],
    );
    const byTag = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "tag:cost-centre", Values: ["4*"] }] }));
    assert.equal(byTag.Tags!.length, 2);
  });

  it("paginates with MaxResults and NextToken, in stable order", async () => {
    const resources = await launchInstances(ec2, 30);
    await ec2.send(
      new CreateTagsCommand({
        Resources: resources,
        Tags: [
          { Key: "a", Value: "1" },
          { Key: "b", Value: "2" },
          { Key: "c", Value: "3" },
          { Key: "d", Value: "4" },
        ],
      }),
    );
    const pages: TagDescription[][] = [];
    for await (const page of paginateDescribeTags({ client: ec2, pageSize: 7 }, {})) pages.push(page.Tags!);
    assert.equal(pages.length, Math.ceil(120 / 7));
    assert.ok(pages.slice(0, -1).every((p) => p.length === 7));
    const all = pages.flat().map((t) => `${t.ResourceId}:${t.Key}`);
    assert.equal(new Set(all).size, 120);
    assert.deepEqual(all, [...all].sort());
    const whole = await ec2.send(new DescribeTagsCommand({ MaxResults: 1000 }));
    assert.equal(whole.Tags!.length, 120);
    assert.equal(whole.NextToken, undefined);
  });

  it("paginates filtered results, exact (read in SQL) or with wildcards", async () => {
    const resources = (await createVolumes(ec2, 40)).sort();
    await ec2.send(
      new CreateTagsCommand({
        Resources: resources,
        Tags: [
          { Key: "team", Value: "a" },
          { Key: "tier", Value: "b" },
        ],
      }),
    );
    for (const values of [["team"], ["te*"]]) {
      const seen: string[] = [];
      for await (const page of paginateDescribeTags({ client: ec2, pageSize: 6 }, { Filters: [{ Name: "key", Values: values }] })) {
        assert.ok(page.Tags!.length <= 6);
        seen.push(...page.Tags!.map((t) => `${t.ResourceId}:${t.Key}`));
      }
      assert.deepEqual(
        seen,
        resources.map((r) => `${r}:team`),
        `filter key=${values[0]}`,
      );
    }
    const none = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "key", Values: [] }] }));
    assert.deepEqual(none.Tags, []);
  });

  it("refuses bad page sizes and tokens", async () => {
    assert.equal((await errorOf(ec2.send(new DescribeTagsCommand({ MaxResults: 4 })))).name, "InvalidParameterValue");
    assert.equal((await errorOf(ec2.send(new DescribeTagsCommand({ MaxResults: 1001 })))).name, "InvalidParameterValue");
    assert.equal((await errorOf(ec2.send(new DescribeTagsCommand({ NextToken: "not-a-token" })))).name, "InvalidNextToken");
  });

  it("refuses malformed ids, reserved and oversized keys, and a 51st tag", async () => {
    const [first, second] = await createVolumes(ec2, 2);
    const malformed = await errorOf(ec2.send(new CreateTagsCommand({ Resources: ["i-xyz"], Tags: [{ Key: "a", Value: "b" }] })));
    assert.equal(malformed.name, "InvalidID");
    const reserved = await errorOf(ec2.send(new CreateTagsCommand({ Resources: [first!], Tags: [{ Key: "aws:owner", Value: "b" }] })));
    assert.equal(reserved.name, "InvalidParameterValue");
    const longKey = await errorOf(ec2.send(new CreateTagsCommand({ Resources: [first!], Tags: [{ Key: "k".repeat(129), Value: "b" }] })));
    assert.equal(longKey.name, "InvalidParameterValue");
    const longValue = await errorOf(ec2.send(new CreateTagsCommand({ Resources: [first!], Tags: [{ Key: "k", Value: "v".repeat(257) }] })));
    assert.equal(longValue.name, "InvalidParameterValue");
    const missing = await errorOf(ec2.send(new CreateTagsCommand({ Resources: [], Tags: [{ Key: "a", Value: "b" }] })));
    assert.equal(missing.name, "MissingParameter");

    const fifty = Array.from({ length: 50 }, (_, i) => ({ Key: `k${i}`, Value: "v" }));
    await ec2.send(new CreateTagsCommand({ Resources: [first!], Tags: fifty }));
    const limit = await errorOf(ec2.send(new CreateTagsCommand({ Resources: [first!, second!], Tags: [{ Key: "one-more", Value: "v" }] })));
    assert.equal(limit.name, "TagLimitExceeded");
    // Nothing of the refused call was written, not even on the resource that had room.
    const untouched = await ec2.send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: [second!] }] }));
    assert.deepEqual(untouched.Tags, []);
  });

  it("changes nothing on DryRun", async () => {
    const [volume] = await createVolumes(ec2, 1);
    const dry = await errorOf(ec2.send(new CreateTagsCommand({ DryRun: true, Resources: [volume!], Tags: [{ Key: "a", Value: "b" }] })));
    assert.equal(dry.name, "DryRunOperation");
    assert.deepEqual((await ec2.send(new DescribeTagsCommand({}))).Tags, []);
    // DryRun still validates first.
    const invalid = await errorOf(ec2.send(new CreateTagsCommand({ DryRun: true, Resources: ["nonsense"], Tags: [{ Key: "a", Value: "b" }] })));
    assert.equal(invalid.name, "InvalidID");
    const absent = await errorOf(ec2.send(new CreateTagsCommand({ DryRun: true, Resources: ["vol-0123456789abcdef0"], Tags: [{ Key: "a", Value: "b" }] })));
    assert.equal(absent.name, "InvalidVolume.NotFound");
    await ec2.send(new CreateTagsCommand({ Resources: [volume!], Tags: [{ Key: "a", Value: "b" }] }));
    assert.equal((await errorOf(ec2.send(new DeleteTagsCommand({ DryRun: true, Resources: [volume!] })))).name, "DryRunOperation");
    assert.equal((await errorOf(ec2.send(new DescribeTagsCommand({ DryRun: true })))).name, "DryRunOperation");
    assert.equal((await ec2.send(new DescribeTagsCommand({}))).Tags!.length, 1);
  });

  it("keeps each account's and each region's tags apart", async () => {
    const other = kiln.ec2({ accessKeyId: "111111111111" });
    const otherRegion = kiln.ec2({ region: "eu-west-1" });
    const image = await catalogueImage(ec2);
    await ec2.send(new CreateTagsCommand({ Resources: [image], Tags: [{ Key: "owner", Value: "default" }] }));
    await other.send(new CreateTagsCommand({ Resources: [image], Tags: [{ Key: "owner", Value: "other" }] }));
    assert.deepEqual(
      (await ec2.send(new DescribeTagsCommand({}))).Tags!.map((t) => t.Value),
      ["default"],
    );
    assert.deepEqual(
      (await other.send(new DescribeTagsCommand({}))).Tags!.map((t) => t.Value),
      ["other"],
    );
    assert.deepEqual((await otherRegion.send(new DescribeTagsCommand({}))).Tags, []);
    // Deleting in one account leaves the other's alone.
    await other.send(new DeleteTagsCommand({ Resources: [image] }));
    assert.deepEqual(
      (await ec2.send(new DescribeTagsCommand({}))).Tags!.map((t) => t.Value),
      ["default"],
    );
  });
});
