// Terraform's AWS provider (from the machine's local plugin mirror) against Kiln: an instance
// from the catalogue via data "aws_ami", an AMI from it with aws_ami_from_instance; apply, a
// second plan with no changes, destroy.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { DescribeImagesCommand, DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { readSnapshot, errorName } from "./helpers/data.js";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";

const run = promisify(execFile);
const PLUGINS = process.env.KILN_TF_PLUGINS ?? "/opt/tf-plugins";
let kiln: TestKiln;
let dir: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  kiln = await startTestKiln();
  dir = tempDir("kiln-terraform-");
  writeFileSync(join(dir, "cli.tfrc"), `provider_installation {\n  filesystem_mirror {\n    path    = "${PLUGINS}"\n    include = ["registry.terraform.io/hashicorp/aws"]\n  }\n}\n`);
  writeFileSync(join(dir, "main.tf"), `
provider "aws" {
  region                      = "us-east-1"
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  endpoints {
    ec2 = "${kiln.url}"
  }
}
data "aws_ami" "al2023" {
  most_recent = true
  owners      = ["amazon"]
  filter {
    name   = "name"
    values = ["al2023-ami-2023.*-x86_64"]
  }
}
resource "aws_instance" "builder" {
  ami           = data.aws_ami.al2023.id
  instance_type = "t3.micro"
  tags          = { Name = "builder" }
}
resource "aws_ami_from_instance" "image" {
  name               = "kiln-terraform-image"
  source_instance_id = aws_instance.builder.id
}
output "ami" { value = aws_ami_from_instance.image.id }
output "instance" { value = aws_instance.builder.id }
`);
  // No network: Terraform's version checks are off, the provider comes from the local mirror.
  env = { ...process.env, TF_CLI_CONFIG_FILE: join(dir, "cli.tfrc"), CHECKPOINT_DISABLE: "1", TF_IN_AUTOMATION: "1" };
});
after(() => kiln.close());

const terraform = (...args: string[]) => run("terraform", [`-chdir=${dir}`, ...args], { env, maxBuffer: 16 * 1024 * 1024 });

describe("Terraform", () => {
  it("applies aws_instance + aws_ami_from_instance + data aws_ami, plans no changes, destroys cleanly", { timeout: 300_000 }, async () => {
    await terraform("init", "-input=false", "-no-color");
    await terraform("apply", "-auto-approve", "-input=false", "-no-color");
    const outputs = JSON.parse((await terraform("output", "-json")).stdout) as Record<string, { value: string }>;
    const ec2 = kiln.ec2();
    const image = (await ec2.send(new DescribeImagesCommand({ ImageIds: [outputs.ami!.value] }))).Images![0]!;
    assert.equal(image.State, "available");
    assert.equal(image.Name, "kiln-terraform-image");
    assert.equal(image.SourceInstanceId, outputs.instance!.value);
    // The AMI's root snapshot carries the catalogue image's boot block, copied through the instance.
    const root = await readSnapshot(kiln, image.BlockDeviceMappings![0]!.Ebs!.SnapshotId!);
    assert.equal(root.get(0)!.subarray(510, 512).toString("hex"), "55aa");

    // A second plan sees nothing to change (exit code 0 with -detailed-exitcode).
    await terraform("plan", "-detailed-exitcode", "-input=false", "-no-color");

    await terraform("destroy", "-auto-approve", "-input=false", "-no-color");
    assert.equal(await errorName(ec2.send(new DescribeImagesCommand({ ImageIds: [outputs.ami!.value] }))), "InvalidAMIID.NotFound");
    const { Reservations } = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [outputs.instance!.value] }));
    assert.equal(Reservations![0]!.Instances![0]!.State!.Name, "terminated");
  });
});
