// Terraform's AWS provider (from the machine's local plugin mirror) against Kiln: a key pair, a
// security group, an instance from the catalogue (data "aws_ami") with user data, a volume
// attached to it and snapshotted, an AMI from the instance shared with another account; apply,
// a second plan with no changes, destroy.
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  DescribeImageAttributeCommand,
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeSecurityGroupsCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
} from "@aws-sdk/client-ec2";
import { readSnapshot, errorName } from "./helpers/data.js";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";
import { kilnProvider, terraformIn } from "./helpers/terraform.js";
import { run as runTool } from "./helpers/tools.js";

let kiln: TestKiln;
let dir: string;
let terraform: ReturnType<typeof terraformIn>;

const SHARED_WITH = "111122223333";
let publicKey: string;

before(async () => {
  kiln = await startTestKiln();
  dir = tempDir("kiln-terraform-");
  await runTool("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "deployer", "-f", join(dir, "deployer")]);
  publicKey = readFileSync(join(dir, "deployer.pub"), "utf8").trim();
  terraform = terraformIn(dir);
  writeFileSync(
    join(dir, "main.tf"),
    `${kilnProvider(kiln.url)}
data "aws_ami" "al2023" {
  most_recent = true
  owners      = ["amazon"]
  filter {
    name   = "name"
    values = ["al2023-ami-2023.*-x86_64"]
  }
}
resource "aws_key_pair" "deployer" {
  key_name   = "kiln-deployer"
  public_key = "${publicKey}"
}
resource "aws_security_group" "builder" {
  name        = "kiln-builder"
  description = "SSH in, HTTPS out"
  ingress {
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["10.0.0.0/8"]
  }
  egress {
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  tags = { Name = "builder" }
}
resource "aws_instance" "builder" {
  ami                    = data.aws_ami.al2023.id
  instance_type          = "t3.micro"
  key_name               = aws_key_pair.deployer.key_name
  vpc_security_group_ids = [aws_security_group.builder.id]
  user_data              = "#!/bin/sh\\necho built by kiln\\n"
  tags                   = { Name = "builder" }
}
resource "aws_ebs_volume" "data" {
  availability_zone = aws_instance.builder.availability_zone
  size              = 2
  type              = "gp3"
  tags              = { Name = "data" }
}
resource "aws_volume_attachment" "data" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.builder.id
}
resource "aws_ebs_snapshot" "data" {
  volume_id = aws_ebs_volume.data.id
  tags      = { Name = "data-snapshot" }
}
resource "aws_ami_from_instance" "image" {
  name               = "kiln-terraform-image"
  source_instance_id = aws_instance.builder.id
  depends_on         = [aws_volume_attachment.data]
}
resource "aws_ami_launch_permission" "share" {
  image_id   = aws_ami_from_instance.image.id
  account_id = "${SHARED_WITH}"
}
output "ami" { value = aws_ami_from_instance.image.id }
output "instance" { value = aws_instance.builder.id }
output "group" { value = aws_security_group.builder.id }
output "snapshot" { value = aws_ebs_snapshot.data.id }
output "fingerprint" { value = aws_key_pair.deployer.fingerprint }
`,
  );
});
after(() => kiln.close());

describe("Terraform", () => {
  it("applies instance, volume, snapshot, AMI, launch permission, key pair and security group; plans no changes; destroys cleanly", {
    timeout: 300_000,
  }, async () => {
    await terraform("init", "-input=false", "-no-color");
    await terraform("apply", "-auto-approve", "-input=false", "-no-color");
    const outputs = JSON.parse((await terraform("output", "-json")).stdout) as Record<string, { value: string }>;
    const ec2 = kiln.ec2();
    const image = (await ec2.send(new DescribeImagesCommand({ ImageIds: [outputs.ami!.value] }))).Images![0]!;
    assert.equal(image.State, "available");
    assert.equal(image.Name, "kiln-terraform-image");
    assert.equal(image.SourceInstanceId, outputs.instance!.value);
    // The AMI's root snapshot carries the catalogue image's boot block, copied through the instance.
    const root = await readSnapshot(kiln, image.BlockDeviceMappings!.find((m) => m.DeviceName === image.RootDeviceName)!.Ebs!.SnapshotId!);
    assert.equal(root.get(0)!.subarray(510, 512).toString("hex"), "55aa");

    // The AMI holds the instance's volumes, the attached one included, and is shared.
    assert.deepEqual(image.BlockDeviceMappings!.map((m) => m.DeviceName).sort(), ["/dev/sdf", "/dev/xvda"]);
    const permissions = await ec2.send(new DescribeImageAttributeCommand({ ImageId: outputs.ami!.value, Attribute: "launchPermission" }));
    assert.deepEqual(permissions.LaunchPermissions, [{ UserId: SHARED_WITH }]);
    // The instance runs with the key, the group and the user data exactly as given.
    const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [outputs.instance!.value] }))).Reservations![0]!.Instances![0]!;
    assert.equal(instance.KeyName, "kiln-deployer");
    assert.deepEqual(instance.SecurityGroups, [{ GroupId: outputs.group!.value, GroupName: "kiln-builder" }]);
    const userData = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: outputs.instance!.value, Attribute: "userData" }));
    assert.equal(Buffer.from(userData.UserData!.Value!, "base64").toString(), "#!/bin/sh\necho built by kiln\n");
    const [key] = (await ec2.send(new DescribeKeyPairsCommand({ KeyNames: ["kiln-deployer"] }))).KeyPairs!;
    assert.equal(key!.KeyFingerprint, outputs.fingerprint!.value);
    assert.equal(
      `SHA256:${key!.KeyFingerprint!.replace(/=+$/, "")}`,
      (await runTool("ssh-keygen", ["-l", "-E", "sha256", "-f", join(dir, "deployer.pub")])).split(" ")[1],
    );
    // Terraform replaced the group's all-out egress rule with the one it was given.
    const [group] = (await ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: [outputs.group!.value] }))).SecurityGroups!;
    assert.deepEqual(
      group!.IpPermissions!.map((p) => [p.IpProtocol, p.FromPort, p.IpRanges![0]!.CidrIp]),
      [["tcp", 22, "10.0.0.0/8"]],
    );
    assert.deepEqual(
      group!.IpPermissionsEgress!.map((p) => [p.IpProtocol, p.FromPort, p.IpRanges![0]!.CidrIp]),
      [["tcp", 443, "0.0.0.0/0"]],
    );
    const [snapshot] = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [outputs.snapshot!.value] }))).Snapshots!;
    assert.equal(snapshot!.State, "completed");
    assert.equal(snapshot!.VolumeSize, 2);

    // A second plan sees nothing to change (exit code 0 with -detailed-exitcode).
    await terraform("plan", "-detailed-exitcode", "-input=false", "-no-color");

    await terraform("destroy", "-auto-approve", "-input=false", "-no-color");
    assert.equal(await errorName(ec2.send(new DescribeImagesCommand({ ImageIds: [outputs.ami!.value] }))), "InvalidAMIID.NotFound");
    const { Reservations } = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [outputs.instance!.value] }));
    assert.equal(Reservations![0]!.Instances![0]!.State!.Name, "terminated");
    assert.equal(await errorName(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [outputs.snapshot!.value] }))), "InvalidSnapshot.NotFound");
    assert.deepEqual((await ec2.send(new DescribeVolumesCommand({}))).Volumes, []);
    assert.deepEqual((await ec2.send(new DescribeKeyPairsCommand({}))).KeyPairs, []);
    assert.deepEqual(
      (await ec2.send(new DescribeSecurityGroupsCommand({}))).SecurityGroups!.map((g) => g.GroupName),
      ["default"],
    );
  });
});
