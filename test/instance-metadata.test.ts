// The instance metadata service, read as a guest reads it at 169.254.169.254, through Kiln's
// route for it (/_kiln/instances/<id>/metadata/, signed by the owner): EC2's listings and
// categories, each matching what DescribeInstances, DescribeSubnets, DescribeVpcs and
// DescribeKeyPairs say of the same instance; IMDSv2 tokens (PUT, TTL bounds, expiry,
// another instance's token refused); IMDSv1 refused with HttpTokens required; the endpoint
// off with HttpEndpoint disabled; tags only while InstanceMetadataTags allows them.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  CreateKeyPairCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSubnetsCommand,
  DescribeVpcsCommand,
  ModifyInstanceMetadataOptionsCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type EC2Client,
  type Instance,
} from "@aws-sdk/client-ec2";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { catalogueImage } from "./helpers/resources.js";
import { signedRequest } from "./helpers/signed.js";
import { MetadataService } from "../src/vm/metadata-service.js";

let kiln: TestKiln;
let ec2: EC2Client;
let image: string;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
  image = await catalogueImage(ec2);
});
after(() => kiln.close());

const TOKEN = "X-aws-ec2-metadata-token";
const TTL = "X-aws-ec2-metadata-token-ttl-seconds";

/** A request to the instance's metadata service, as the guest would send it. */
const imds = (instanceId: string, path: string, options: { method?: "GET" | "PUT"; headers?: Record<string, string>; accessKeyId?: string } = {}) =>
  signedRequest(kiln.url, {
    method: options.method ?? "GET",
    path: `/_kiln/instances/${instanceId}/metadata${path}`,
    headers: options.headers,
    accessKeyId: options.accessKeyId,
  });

async function tokenFor(instanceId: string, ttl = "300"): Promise<string> {
  const answer = await imds(instanceId, "/latest/api/token", { method: "PUT", headers: { [TTL]: ttl } });
  assert.equal(answer.status, 200, answer.text);
  assert.equal(answer.headers.get(TTL), ttl);
  return answer.text;
}

const launch = async (extra: Partial<ConstructorParameters<typeof RunInstancesCommand>[0]> = {}) =>
  (await ec2.send(new RunInstancesCommand({ ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", ...extra }))).Instances![0]!.InstanceId!;

const describeOne = async (id: string): Promise<Instance> =>
  (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;

describe("instance metadata service", () => {
  it("serves every category as DescribeInstances describes the instance, with EC2's listings", async () => {
    const key = await ec2.send(new CreateKeyPairCommand({ KeyName: "imds-key" }));
    const userData = "#!/bin/sh\necho hello from user data\n";
    const id = await launch({
      KeyName: key.KeyName,
      UserData: Buffer.from(userData).toString("base64"),
      MetadataOptions: { InstanceMetadataTags: "enabled" },
      TagSpecifications: [
        {
          ResourceType: "instance",
          Tags: [
            { Key: "Name", Value: "imds" },
            { Key: "team", Value: "kiln" },
          ],
        },
      ],
    });
    const instance = await describeOne(id);
    const token = await tokenFor(id);
    const read = async (path: string) => {
      const answer = await imds(id, `/latest/${path}`, { headers: { [TOKEN]: token } });
      assert.equal(answer.status, 200, `${path}: ${answer.status} ${answer.text}`);
      assert.match(answer.headers.get("content-type") ?? "", /^text\/plain/, path);
      return answer.text;
    };

    assert.ok((await imds(id, "/", { headers: { [TOKEN]: token } })).text.split("\n").includes("latest"), "the root lists the versions");
    assert.deepEqual((await read("")).split("\n").sort(), ["dynamic/", "meta-data/", "user-data"]);
    const top = (await read("meta-data/")).split("\n");
    for (const name of ["ami-id", "ami-launch-index", "block-device-mapping/", "hostname", "instance-id", "instance-type", "local-hostname", "local-ipv4"]) {
      assert.ok(top.includes(name), `meta-data/ lists ${name}`);
    }
    for (const name of ["mac", "network/", "placement/", "public-keys/", "security-groups", "services/", "tags/"])
      assert.ok(top.includes(name), `meta-data/ lists ${name}`);

    const eni = instance.NetworkInterfaces![0]!;
    const mac = eni.MacAddress!;
    const [subnet] = (await ec2.send(new DescribeSubnetsCommand({ SubnetIds: [instance.SubnetId!] }))).Subnets!;
    const [vpc] = (await ec2.send(new DescribeVpcsCommand({ VpcIds: [instance.VpcId!] }))).Vpcs!;
    const [pair] = (await ec2.send(new DescribeKeyPairsCommand({ KeyNames: ["imds-key"], IncludePublicKey: true }))).KeyPairs!;
    const expected: Record<string, string> = {
      "meta-data/ami-id": instance.ImageId!,
      "meta-data/ami-launch-index": "0",
      "meta-data/block-device-mapping/root": instance.RootDeviceName!,
      "meta-data/block-device-mapping/ami": instance.RootDeviceName!.replace("/dev/", ""),
      "meta-data/hostname": instance.PrivateDnsName!,
      "meta-data/local-hostname": instance.PrivateDnsName!,
      "meta-data/local-ipv4": instance.PrivateIpAddress!,
      "meta-data/instance-id": id,
      "meta-data/instance-type": "t3.micro",
      "meta-data/mac": mac,
      [`meta-data/network/interfaces/macs/${mac}/device-number`]: "0",
      [`meta-data/network/interfaces/macs/${mac}/interface-id`]: eni.NetworkInterfaceId!,
      [`meta-data/network/interfaces/macs/${mac}/local-ipv4s`]: instance.PrivateIpAddress!,
      [`meta-data/network/interfaces/macs/${mac}/mac`]: mac,
      [`meta-data/network/interfaces/macs/${mac}/owner-id`]: eni.OwnerId!,
      [`meta-data/network/interfaces/macs/${mac}/security-group-ids`]: eni.Groups!.map((g) => g.GroupId).join("\n"),
      [`meta-data/network/interfaces/macs/${mac}/security-groups`]: eni.Groups!.map((g) => g.GroupName).join("\n"),
      [`meta-data/network/interfaces/macs/${mac}/subnet-id`]: instance.SubnetId!,
      [`meta-data/network/interfaces/macs/${mac}/subnet-ipv4-cidr-block`]: subnet!.CidrBlock!,
      [`meta-data/network/interfaces/macs/${mac}/vpc-id`]: instance.VpcId!,
      [`meta-data/network/interfaces/macs/${mac}/vpc-ipv4-cidr-block`]: vpc!.CidrBlock!,
      "meta-data/placement/availability-zone": instance.Placement!.AvailabilityZone!,
      "meta-data/placement/availability-zone-id": subnet!.AvailabilityZoneId!,
      "meta-data/placement/region": "us-east-1",
      "meta-data/public-keys/0/openssh-key": `${pair!.PublicKey!.trim()}\n`,
      "meta-data/security-groups": instance.SecurityGroups!.map((g) => g.GroupName).join("\n"),
      "meta-data/services/domain": "amazonaws.com",
      "meta-data/services/partition": "aws",
      "meta-data/tags/instance/Name": "imds",
      "meta-data/tags/instance/team": "kiln",
      "user-data": userData,
    };
    for (const [path, value] of Object.entries(expected)) assert.equal(await read(path), value, path);
    if (instance.PublicIpAddress) {
      assert.equal(await read("meta-data/public-ipv4"), instance.PublicIpAddress);
      assert.equal(await read("meta-data/public-hostname"), instance.PublicDnsName);
    }
    assert.equal(await read("meta-data/public-keys/"), "0=imds-key");
    assert.equal(await read("meta-data/public-keys/0/"), "openssh-key");
    assert.deepEqual((await read("meta-data/tags/instance")).split("\n").sort(), ["Name", "team"]);
    assert.equal(await read("meta-data/network/interfaces/macs/"), `${mac}/`);
    assert.equal(await read("dynamic/instance-identity/"), "document");
    const document = JSON.parse(await read("dynamic/instance-identity/document"));
    assert.deepEqual(
      [document.instanceId, document.imageId, document.instanceType, document.privateIp, document.region, document.availabilityZone, document.accountId],
      [id, instance.ImageId, "t3.micro", instance.PrivateIpAddress, "us-east-1", instance.Placement!.AvailabilityZone, eni.OwnerId],
    );
    // A dated version serves what latest does (cloud-init asks for one).
    assert.equal((await imds(id, "/2021-03-23/meta-data/instance-id", { headers: { [TOKEN]: token } })).text, id);
    const missing = await imds(id, "/latest/meta-data/no-such-category", { headers: { [TOKEN]: token } });
    assert.equal(missing.status, 404);
    assert.match(missing.text, /404 - Not Found/);
  });

  it("checks tokens: a TTL of 1 to 21600 s, expired, forged or another instance's refused; IMDSv1 only while tokens are optional", async () => {
    const optional = { MetadataOptions: { HttpTokens: "optional" as const } };
    const [id, other] = [await launch(optional), await launch(optional)];
    for (const ttl of ["0", "21601", "ten", ""]) {
      assert.equal((await imds(id, "/latest/api/token", { method: "PUT", headers: { [TTL]: ttl } })).status, 400, `TTL ${JSON.stringify(ttl)}`);
    }
    assert.equal((await imds(id, "/latest/api/token", { method: "PUT" })).status, 400, "no TTL");
    assert.equal((await imds(id, "/latest/api/token")).status, 405, "a token is PUT");
    assert.equal(
      (await imds(id, "/latest/api/token", { method: "PUT", headers: { [TTL]: "60", "X-Forwarded-For": "10.0.0.1" } })).status,
      403,
      "through a proxy",
    );

    const token = await tokenFor(id, "21600");
    const withToken = await imds(id, "/latest/meta-data/instance-id", { headers: { [TOKEN]: token } });
    assert.equal(withToken.text, id);
    assert.ok(Number(withToken.headers.get(TTL)) > 21500, "the seconds the token has left");
    assert.equal((await imds(other, "/latest/meta-data/instance-id", { headers: { [TOKEN]: token } })).status, 401, "another instance's token");
    assert.equal((await imds(id, "/latest/meta-data/instance-id", { headers: { [TOKEN]: `${token}x` } })).status, 401, "a forged token");
    const short = await tokenFor(id, "1");
    await new Promise((resolve) => setTimeout(resolve, 2100));
    assert.equal((await imds(id, "/latest/meta-data/instance-id", { headers: { [TOKEN]: short } })).status, 401, "an expired token");

    assert.equal((await imds(id, "/latest/meta-data/instance-id")).text, id, "IMDSv1 while tokens are optional");
    await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpTokens: "required" }));
    const v1 = await imds(id, "/latest/meta-data/instance-id");
    assert.equal(v1.status, 401, "IMDSv1 refused once tokens are required");
    assert.match(v1.text, /401 - Unauthorized/);
    assert.equal((await imds(id, "/latest/meta-data/instance-id", { headers: { [TOKEN]: token } })).text, id);
  });

  it("is off with HttpEndpoint disabled, has tags only when allowed, and answers only the owner", async () => {
    const id = await launch({ TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "Name", Value: "quiet" }] }] });
    const token = await tokenFor(id);
    const get = (path: string) => imds(id, path, { headers: { [TOKEN]: token } });
    assert.ok(!(await get("/latest/meta-data/")).text.split("\n").includes("tags/"), "no tags while InstanceMetadataTags is disabled");
    assert.equal((await get("/latest/meta-data/tags/instance/Name")).status, 404);
    assert.equal((await get("/latest/user-data")).status, 404, "no user data");
    await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, InstanceMetadataTags: "enabled" }));
    assert.equal((await get("/latest/meta-data/tags/instance/Name")).text, "quiet");

    await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpEndpoint: "disabled" }));
    assert.equal((await get("/latest/meta-data/instance-id")).status, 403, "the endpoint is off");
    assert.equal((await imds(id, "/latest/api/token", { method: "PUT", headers: { [TTL]: "60" } })).status, 403);
    await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpEndpoint: "enabled" }));
    assert.equal((await get("/latest/meta-data/instance-id")).text, id, "and on again");

    const stranger = await imds(id, "/latest/meta-data/instance-id", { accessKeyId: "111111111111" });
    assert.equal(stranger.status, 404, "another account does not see it");
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.equal((await get("/latest/meta-data/instance-id")).status, 404, "a terminated instance has none");
  });
});

describe("the metadata service's IPv6 endpoint", () => {
  it("answers only while HttpProtocolIpv6 is enabled", async () => {
    const service = new MetadataService();
    const answer = (httpProtocolIpv6: "enabled" | "disabled", ipv6: boolean) =>
      service.answer("i-0123456789abcdef0", { method: "GET", path: "/latest/meta-data/", headers: {}, ipv6 }, async () => ({
        facts: {
          instance: {},
          reservationId: "r-1",
          accountId: "000000000000",
          region: "us-east-1",
          zoneId: "use1-az1",
          subnetCidr: "",
          vpcCidrs: [],
          tagsAllowed: false,
        },
        options: { httpTokens: "optional", httpEndpoint: "enabled", httpProtocolIpv6 },
      }));
    assert.equal((await answer("disabled", true)).status, 403);
    assert.equal((await answer("enabled", true)).status, 200);
    assert.equal((await answer("disabled", false)).status, 200, "IPv4 either way");
  });
});
