// What launch tools read and change on an instance, through @aws-sdk/client-ec2: every
// DescribeInstanceAttribute attribute, ModifyInstanceAttribute (and what the attributes make
// happen: termination and stop protection, the shutdown behaviour of a stop from inside),
// credit specifications, status checks, console output, instance types and their offerings, and
// the metadata options (RunInstances' MetadataOptions, ModifyInstanceMetadataOptions).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import {
  CreateSecurityGroupCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstanceCreditSpecificationsCommand,
  DescribeInstancesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstanceTypesCommand,
  DescribeInstanceTypeOfferingsCommand,
  GetConsoleOutputCommand,
  ModifyInstanceAttributeCommand,
  ModifyInstanceCreditSpecificationCommand,
  ModifyInstanceMetadataOptionsCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  type EC2Client,
  type InstanceAttributeName,
} from "@aws-sdk/client-ec2";
import { BLOCK, errorName, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { catalogueImage } from "./helpers/resources.js";

let kiln: TestKiln;
let ec2: EC2Client;
let image: string;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
  // An Amazon Linux image, whose root device (/dev/xvda) the tests name.
  image = await catalogueImage(ec2);
});
after(() => kiln.close());

const launch = async (extra: Partial<ConstructorParameters<typeof RunInstancesCommand>[0]> = {}) =>
  (await ec2.send(new RunInstancesCommand({ ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: "t3.micro", ...extra }))).Instances![0]!.InstanceId!;
const attribute = (InstanceId: string, Attribute: InstanceAttributeName) => ec2.send(new DescribeInstanceAttributeCommand({ InstanceId, Attribute }));
const stateOf = async (id: string) => (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;

describe("DescribeInstanceAttribute", () => {
  it("answers every attribute with the values the instance launched with", async () => {
    const userData = Buffer.from("#!/bin/sh\necho kiln\n").toString("base64");
    const id = await launch({ UserData: userData, DisableApiTermination: true, InstanceInitiatedShutdownBehavior: "terminate", EbsOptimized: true });
    assert.equal((await attribute(id, "userData")).UserData!.Value, userData);
    assert.equal((await attribute(id, "disableApiTermination")).DisableApiTermination!.Value, true);
    assert.equal((await attribute(id, "disableApiStop")).DisableApiStop!.Value, false);
    assert.equal((await attribute(id, "instanceInitiatedShutdownBehavior")).InstanceInitiatedShutdownBehavior!.Value, "terminate");
    assert.equal((await attribute(id, "instanceType")).InstanceType!.Value, "t3.micro");
    assert.equal((await attribute(id, "ebsOptimized")).EbsOptimized!.Value, true);
    assert.equal((await attribute(id, "sourceDestCheck")).SourceDestCheck!.Value, true);
    assert.equal((await attribute(id, "rootDeviceName")).RootDeviceName!.Value, "/dev/xvda");
    assert.equal((await attribute(id, "blockDeviceMapping")).BlockDeviceMappings![0]!.DeviceName, "/dev/xvda");
    assert.deepEqual(
      (await attribute(id, "groupSet")).Groups!.map((g) => g.GroupName),
      ["default"],
    );
    assert.deepEqual((await attribute(id, "productCodes")).ProductCodes, []);
    assert.equal((await attribute(id, "enaSupport")).EnaSupport!.Value, true);
    assert.deepEqual((await attribute(id, "enclaveOptions")).EnclaveOptions, { Enabled: false });
    // Unset values come back as empty elements, as EC2 sends them.
    assert.deepEqual((await attribute(id, "kernel")).KernelId, {});
    assert.deepEqual((await attribute(await launch(), "userData")).UserData, {});
  });
});

describe("ModifyInstanceAttribute", () => {
  it("honours disableApiTermination and disableApiStop until they are lifted", async () => {
    const id = await launch({ DisableApiTermination: true, DisableApiStop: true });
    assert.equal(await errorName(ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }))), "OperationNotPermitted");
    assert.equal(await errorName(ec2.send(new StopInstancesCommand({ InstanceIds: [id] }))), "OperationNotPermitted");
    assert.equal((await stateOf(id)).State!.Name, "running");
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, DisableApiStop: { Value: false } }));
    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, Attribute: "disableApiTermination", Value: "false" }));
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.equal((await stateOf(id)).State!.Name, "terminated");
  });

  it("changes type, user data and ebsOptimized only while stopped; keeps user data exactly", async () => {
    const id = await launch();
    assert.equal(
      await errorName(ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: "m5.large" } }))),
      "IncorrectInstanceState",
    );
    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: "m5.large" } }));
    assert.equal((await stateOf(id)).InstanceType, "m5.large");
    assert.equal(
      await errorName(ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, InstanceType: { Value: "t4g.micro" } }))),
      "InvalidInstanceAttributeValue",
    );
    const script = Buffer.from([0, 1, 2, 255, 254, 10, 13]);
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, UserData: { Value: script } }));
    assert.equal((await attribute(id, "userData")).UserData!.Value, script.toString("base64"));
    // One attribute per call.
    assert.equal(
      await errorName(ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, EbsOptimized: { Value: true }, SourceDestCheck: { Value: false } }))),
      "InvalidParameterCombination",
    );
  });

  it("changes source/dest check, security groups and DeleteOnTermination", async () => {
    const id = await launch();
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, SourceDestCheck: { Value: false } }));
    assert.equal((await attribute(id, "sourceDestCheck")).SourceDestCheck!.Value, false);
    assert.equal((await stateOf(id)).SourceDestCheck, false);
    const group = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "app", Description: "app" }));
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: id, Groups: [group.GroupId!] }));
    assert.deepEqual((await stateOf(id)).SecurityGroups, [{ GroupId: group.GroupId, GroupName: "app" }]);
    await ec2.send(
      new ModifyInstanceAttributeCommand({ InstanceId: id, BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { DeleteOnTermination: false } }] }),
    );
    const mapping = (await attribute(id, "blockDeviceMapping")).BlockDeviceMappings![0]!;
    assert.equal(mapping.Ebs!.DeleteOnTermination, false);
  });

  it("a shutdown from inside stops the instance, or terminates it when instanceInitiatedShutdownBehavior says so", async () => {
    const stopper = await launch();
    const terminator = await launch();
    await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: terminator, InstanceInitiatedShutdownBehavior: { Value: "terminate" } }));
    for (const id of [stopper, terminator]) {
      const response = await kiln.admin(`/_kiln/instances/${id}/shutdown`);
      assert.equal(response.status, 200, response.text);
    }
    const stopped = await stateOf(stopper);
    assert.equal(stopped.State!.Name, "stopped");
    assert.equal(stopped.StateReason!.Code, "Client.InstanceInitiatedShutdown");
    assert.equal((await stateOf(terminator)).State!.Name, "terminated");
    // A stopped instance has nothing to shut down.
    assert.equal((await kiln.admin(`/_kiln/instances/${stopper}/shutdown`)).status, 409);
  });
});

describe("credits, status, console, types and offerings", () => {
  it("reports and changes CPU credits of burstable instances", async () => {
    const t3 = await launch();
    const t2 = await launch({ InstanceType: "t2.micro", CreditSpecification: { CpuCredits: "unlimited" } });
    const m5 = await launch({ InstanceType: "m5.large" });
    const credits = async (ids: string[]) =>
      (await ec2.send(new DescribeInstanceCreditSpecificationsCommand({ InstanceIds: ids }))).InstanceCreditSpecifications!.map((c) => c.CpuCredits);
    assert.deepEqual(await credits([t3, t2]), ["unlimited", "unlimited"]);
    const changed = await ec2.send(
      new ModifyInstanceCreditSpecificationCommand({
        InstanceCreditSpecifications: [
          { InstanceId: t3, CpuCredits: "standard" },
          { InstanceId: m5, CpuCredits: "standard" },
        ],
      }),
    );
    assert.deepEqual(changed.SuccessfulInstanceCreditSpecifications, [{ InstanceId: t3 }]);
    assert.equal(changed.UnsuccessfulInstanceCreditSpecifications![0]!.InstanceId, m5);
    assert.deepEqual(await credits([t3]), ["standard"]);
    assert.equal(
      await errorName(
        ec2.send(
          new RunInstancesCommand({ ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: "m5.large", CreditSpecification: { CpuCredits: "unlimited" } }),
        ),
      ),
      "InvalidParameterCombination",
    );
  });

  it("reports status checks for running instances, and all with IncludeAllInstances", async () => {
    const running = await launch();
    const stopped = await launch();
    await ec2.send(new StopInstancesCommand({ InstanceIds: [stopped] }));
    const statuses = (await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [running, stopped] }))).InstanceStatuses!;
    assert.deepEqual(
      statuses.map((s) => s.InstanceId),
      [running],
    );
    assert.equal(statuses[0]!.InstanceStatus!.Status, "ok");
    assert.equal(statuses[0]!.SystemStatus!.Details![0]!.Status, "passed");
    const all = (await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [running, stopped], IncludeAllInstances: true }))).InstanceStatuses!;
    assert.deepEqual(
      all.map((s) => [s.InstanceId, s.InstanceState!.Name, s.InstanceStatus!.Status]).sort(),
      [
        [running, "running", "ok"],
        [stopped, "stopped", "not-applicable"],
      ].sort(),
    );
    const filtered = async (name: string, value: string) =>
      (
        await ec2.send(
          new DescribeInstanceStatusCommand({ InstanceIds: [running, stopped], IncludeAllInstances: true, Filters: [{ Name: name, Values: [value] }] }),
        )
      ).InstanceStatuses!.map((s) => s.InstanceId);
    assert.deepEqual(await filtered("instance-status.status", "ok"), [running]);
    assert.deepEqual(await filtered("instance-status.status", "not-applicable"), [stopped]);
    assert.deepEqual(await filtered("system-status.reachability", "passed"), [running]);
    assert.deepEqual(await filtered("instance-state-name", "stopped"), [stopped]);
    const output = await ec2.send(new GetConsoleOutputCommand({ InstanceId: running }));
    assert.equal(output.InstanceId, running);
    assert.ok(output.Timestamp instanceof Date);
    assert.equal(await errorName(ec2.send(new GetConsoleOutputCommand({ InstanceId: "i-0123456789abcdef0" }))), "InvalidInstanceID.NotFound");
  });

  it("describes instance types with their facts, filters them, and RunInstances refuses unknown types and other architectures", async () => {
    const types = (await ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: ["t3.micro", "m7g.large", "c5.xlarge"] }))).InstanceTypes!;
    const byName = Object.fromEntries(types.map((t) => [t.InstanceType, t]));
    assert.equal(byName["t3.micro"]!.VCpuInfo!.DefaultVCpus, 2);
    assert.equal(byName["t3.micro"]!.MemoryInfo!.SizeInMiB, 1024);
    assert.equal(byName["t3.micro"]!.FreeTierEligible, true);
    assert.equal(byName["t3.micro"]!.BurstablePerformanceSupported, true);
    assert.deepEqual(byName["m7g.large"]!.ProcessorInfo!.SupportedArchitectures, ["arm64"]);
    assert.equal(byName["c5.xlarge"]!.MemoryInfo!.SizeInMiB, 8192);
    assert.equal(byName["c5.xlarge"]!.EbsInfo!.NvmeSupport, "required");
    assert.ok(byName["c5.xlarge"]!.NetworkInfo!.NetworkPerformance);
    const free = (await ec2.send(new DescribeInstanceTypesCommand({ Filters: [{ Name: "free-tier-eligible", Values: ["true"] }] })))
      .InstanceTypes!.map((t) => t.InstanceType)
      .sort();
    assert.deepEqual(free, ["t2.micro", "t3.micro"]);
    const arm = (await ec2.send(new DescribeInstanceTypesCommand({ Filters: [{ Name: "processor-info.supported-architecture", Values: ["arm64"] }] })))
      .InstanceTypes!;
    assert.ok(arm.length >= 8 && arm.every((t) => t.InstanceType!.startsWith("t4g.") || t.InstanceType!.startsWith("m7g.")));
    assert.equal(await errorName(ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: ["x9.huge" as "t3.micro"] }))), "InvalidInstanceType");
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: "x9.huge" as "t3.micro" }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: image, MinCount: 1, MaxCount: 1, InstanceType: "t4g.micro" }))),
      "InvalidParameterValue",
    );
  });

  it("offers every known type in the region and in each zone", async () => {
    const inRegion = (await ec2.send(new DescribeInstanceTypeOfferingsCommand({ Filters: [{ Name: "instance-type", Values: ["t3.*"] }] })))
      .InstanceTypeOfferings!;
    assert.ok(inRegion.some((o) => o.InstanceType === "t3.micro" && o.Location === "us-east-1" && o.LocationType === "region"));
    assert.ok(inRegion.every((o) => o.InstanceType!.startsWith("t3.")));
    const inZone = (
      await ec2.send(
        new DescribeInstanceTypeOfferingsCommand({ LocationType: "availability-zone", Filters: [{ Name: "instance-type", Values: ["m7g.large"] }] }),
      )
    ).InstanceTypeOfferings!;
    assert.deepEqual(inZone.map((o) => o.Location).sort(), ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"]);
  });
});

describe("metadata options", () => {
  const optionsOf = async (id: string) => (await stateOf(id)).MetadataOptions!;

  it("launch with EC2's defaults for the image, or what MetadataOptions asks; refuse what EC2 refuses", async () => {
    // An image with no ImdsSupport: IMDSv1 allowed, a hop limit of 1.
    const snapshotId = await writeSnapshot(kiln, new Map([[0, Buffer.alloc(BLOCK, 1)]]), { size: 1 });
    const register = async (Name: string, ImdsSupport?: "v2.0") =>
      (
        await ec2.send(
          new RegisterImageCommand({
            Name,
            Architecture: "x86_64",
            RootDeviceName: "/dev/xvda",
            VirtualizationType: "hvm",
            ImdsSupport,
            BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: snapshotId } }],
          }),
        )
      ).ImageId!;
    assert.deepEqual(await optionsOf(await launch({ ImageId: await register("imds-any") })), {
      State: "applied",
      HttpTokens: "optional",
      HttpPutResponseHopLimit: 1,
      HttpEndpoint: "enabled",
      HttpProtocolIpv6: "disabled",
      InstanceMetadataTags: "disabled",
    });
    // An image that supports IMDSv2 only (as the catalogue's Amazon Linux 2023 does): tokens
    // required, a hop limit of 2.
    const ImageId = await register("imds-v2-only", "v2.0");
    for (const v2Only of [await optionsOf(await launch({ ImageId })), await optionsOf(await launch())]) {
      assert.deepEqual([v2Only.HttpTokens, v2Only.HttpPutResponseHopLimit], ["required", 2]);
    }
    // Asked for: each option given wins over the image's default.
    const asked = await optionsOf(
      await launch({
        ImageId,
        MetadataOptions: { HttpTokens: "optional", HttpPutResponseHopLimit: 5, HttpEndpoint: "disabled", InstanceMetadataTags: "enabled" },
      }),
    );
    assert.deepEqual([asked.HttpTokens, asked.HttpPutResponseHopLimit, asked.HttpEndpoint, asked.InstanceMetadataTags], ["optional", 5, "disabled", "enabled"]);
    for (const MetadataOptions of [{ HttpPutResponseHopLimit: 65 }, { HttpPutResponseHopLimit: 0 }, { HttpTokens: "sometimes" as "optional" }]) {
      assert.equal(await errorName(launch({ MetadataOptions })), "InvalidParameterValue", JSON.stringify(MetadataOptions));
    }
  });

  it("ModifyInstanceMetadataOptions changes what it names, answers pending, and DescribeInstances shows it applied and filters by it", async () => {
    const id = await launch();
    const modified = await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpTokens: "required", HttpPutResponseHopLimit: 3 }));
    assert.equal(modified.InstanceId, id);
    assert.deepEqual(modified.InstanceMetadataOptions, {
      State: "pending",
      HttpTokens: "required",
      HttpPutResponseHopLimit: 3,
      HttpEndpoint: "enabled",
      HttpProtocolIpv6: "disabled",
      InstanceMetadataTags: "disabled",
    });
    await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, InstanceMetadataTags: "enabled" }));
    const options = await optionsOf(id);
    assert.deepEqual(
      [options.State, options.HttpTokens, options.HttpPutResponseHopLimit, options.InstanceMetadataTags],
      ["applied", "required", 3, "enabled"],
      "what the second change left out stays as the first left it",
    );
    const found = async (Name: string, value: string) =>
      (await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name, Values: [value] }] }))).Reservations!.flatMap((r) =>
        r.Instances!.map((i) => i.InstanceId),
      );
    assert.ok((await found("metadata-options.http-tokens", "required")).includes(id));
    assert.ok(!(await found("metadata-options.http-tokens", "optional")).includes(id));
    assert.ok((await found("metadata-options.http-put-response-hop-limit", "3")).includes(id));
    assert.ok((await found("metadata-options.instance-metadata-tags", "enabled")).includes(id));

    assert.equal(
      await errorName(ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpEndpoint: "off" as "enabled" }))),
      "InvalidParameterValue",
    );
    assert.equal(
      await errorName(ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: "i-0123456789abcdef0", HttpTokens: "required" }))),
      "InvalidInstanceID.NotFound",
    );
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    assert.equal(await errorName(ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpTokens: "optional" }))), "IncorrectInstanceState");
  });
});
