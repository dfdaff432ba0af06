// Packer's amazon-ebs builder (Debian's `packer`) against Kiln, as an image pipeline runs it: a
// source AMI from the public catalogue by filter (Ubuntu 22.04 by Canonical's owner id, the newest
// serial), a temporary key pair and security group, an
// instance with an extra volume, stop, CreateImage, a copy to a second region, sharing with an
// account, AMI and snapshot tags; then cleanup. The AMIs must carry both volumes, the tags and the
// sharing in both regions, and nothing temporary may be left.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  DescribeImageAttributeCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { amazonEbsOn, packerEnv } from "./helpers/packer.js";
import { run, scratch } from "./helpers/tools.js";

const SHARED_WITH = "111122223333";
let kiln: TestKiln;
let dir: string;

before(async () => {
  kiln = await startTestKiln();
  dir = scratch("kiln-packer-");
  const template = {
    builders: [
      {
        ...amazonEbsOn(kiln.url),
        instance_type: "t3.micro",
        communicator: "none",
        source_ami_filter: {
          filters: { name: "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*", "root-device-type": "ebs", "virtualization-type": "hvm" },
          owners: ["099720109477"],
          most_recent: true,
        },
        ami_name: "kiln-packer-image",
        ami_description: "built by Packer on Kiln",
        launch_block_device_mappings: [{ device_name: "/dev/sdf", volume_size: 2, volume_type: "gp2", delete_on_termination: true }],
        ami_users: [SHARED_WITH],
        ami_regions: ["us-west-2"],
        tags: { Builder: "packer", Base: "{{ .SourceAMIName }}" },
        snapshot_tags: { Built: "kiln" },
      },
    ],
  };
  writeFileSync(join(dir, "template.json"), JSON.stringify(template, null, 2));
});
after(() => kiln.close());

describe("Packer amazon-ebs", () => {
  it("builds an AMI with two volumes, copies it to a second region, shares and tags it, and leaves nothing temporary", { timeout: 300_000 }, async () => {
    // No network: no version check, configuration and cache in the scratch folder.
    const env = { ...packerEnv(dir), PACKER_LOG: "0" };
    const output = await run("packer", ["build", "-machine-readable", "-color=false", "template.json"], { cwd: dir, env });
    const artifact = /artifact,0,id,(.+)/.exec(output)?.[1];
    assert.ok(artifact, `Packer printed no artifact:\n${output.slice(-2000)}`);
    // "us-east-1:ami-…%!(PACKER_COMMA)us-west-2:ami-…"
    const amis = Object.fromEntries(artifact.split("%!(PACKER_COMMA)").map((pair) => pair.split(":") as [string, string]));
    assert.deepEqual(Object.keys(amis).sort(), ["us-east-1", "us-west-2"]);

    for (const [region, amiId] of Object.entries(amis)) {
      const ec2 = kiln.ec2({ region });
      const [image] = (await ec2.send(new DescribeImagesCommand({ ImageIds: [amiId] }))).Images!;
      assert.equal(image!.State, "available");
      assert.equal(image!.Name, "kiln-packer-image");
      const devices = image!.BlockDeviceMappings!.map((m) => [m.DeviceName, m.Ebs!.VolumeSize]).sort();
      assert.deepEqual(devices, [
        ["/dev/sda1", 8],
        ["/dev/sdf", 2],
      ]);
      const tags = Object.fromEntries(image!.Tags!.map((t) => [t.Key, t.Value]));
      assert.equal(tags.Builder, "packer");
      assert.equal(tags.Base, "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20261119");
      for (const mapping of image!.BlockDeviceMappings!) {
        const [snapshot] = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [mapping.Ebs!.SnapshotId!] }))).Snapshots!;
        assert.deepEqual(
          snapshot!.Tags?.find((t) => t.Key === "Built"),
          { Key: "Built", Value: "kiln" },
          `${region} ${mapping.DeviceName}`,
        );
      }
      const permissions = await ec2.send(new DescribeImageAttributeCommand({ ImageId: amiId, Attribute: "launchPermission" }));
      assert.deepEqual(permissions.LaunchPermissions, [{ UserId: SHARED_WITH }]);
      // Shared for real: the account sees it.
      const seen = await kiln.ec2({ region, accessKeyId: SHARED_WITH }).send(new DescribeImagesCommand({ ImageIds: [amiId] }));
      assert.equal(seen.Images![0]!.ImageId, amiId);
    }

    // Nothing temporary is left: the builder instance terminated, its volumes gone with it, the
    // temporary key pair and security group deleted.
    const ec2: EC2Client = kiln.ec2();
    const instances = (await ec2.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances!);
    assert.equal(instances.length, 1);
    assert.equal(instances[0]!.State!.Name, "terminated");
    assert.deepEqual((await ec2.send(new DescribeVolumesCommand({}))).Volumes, []);
    assert.deepEqual((await ec2.send(new DescribeKeyPairsCommand({}))).KeyPairs, []);
    assert.deepEqual(
      (await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups!.map((g) => g.GroupName),
      ["default"],
    );
  });
});
