// The ways Terraform configurations find their AMIs, against Kiln: the AWS provider's documented
// aws_instance example (a data "aws_ami" for Ubuntu 22.04 by Canonical's owner id), unchanged
// but for the endpoint; a data "aws_ssm_parameter" for the AL2023 public parameter feeding an
// instance; and aws_ssm_parameter resources of the account's own. Apply, plan nothing, destroy.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DescribeImagesCommand, DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { DescribeParametersCommand, GetParameterCommand, ListTagsForResourceCommand } from "@aws-sdk/client-ssm";
import { startTestKiln, tempDir, type TestKiln } from "./helpers/kiln.js";
import { kilnProvider, terraformIn } from "./helpers/terraform.js";

let kiln: TestKiln;
let terraform: ReturnType<typeof terraformIn>;

before(async () => {
  kiln = await startTestKiln();
  const dir = tempDir("kiln-terraform-lookups-");
  terraform = terraformIn(dir);
  writeFileSync(
    join(dir, "main.tf"),
    `${kilnProvider(kiln.url, ["ec2", "ssm"])}
# The provider documentation's aws_instance example, as written there.
data "aws_ami" "ubuntu" {
  most_recent = true

  filter {
    name   = "name"
    values = ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]
  }

  filter {
    name   = "virtualization-type"
    values = ["hvm"]
  }

  owners = ["099720109477"] # Canonical
}

resource "aws_instance" "web" {
  ami           = data.aws_ami.ubuntu.id
  instance_type = "t3.micro"

  tags = {
    Name = "HelloWorld"
  }
}

# The AMI by its public SSM parameter.
data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

resource "aws_instance" "app" {
  ami           = data.aws_ssm_parameter.al2023.value
  instance_type = "t3.micro"
}

# The account's own parameters.
resource "aws_ssm_parameter" "golden" {
  name      = "/images/golden"
  type      = "String"
  data_type = "aws:ec2:image"
  value     = aws_instance.web.ami
  tags      = { Team = "images" }
}

resource "aws_ssm_parameter" "password" {
  name  = "/images/password"
  type  = "SecureString"
  value = "correct horse battery staple"
}

output "web" { value = aws_instance.web.id }
output "app" { value = aws_instance.app.id }
output "ubuntu" { value = data.aws_ami.ubuntu.name }
`,
  );
});
after(() => kiln.close());

describe("Terraform AMI lookups", () => {
  it("applies the documented aws_instance example and an SSM-fed instance, plans no changes, destroys", { timeout: 300_000 }, async () => {
    await terraform("init", "-input=false", "-no-color");
    await terraform("apply", "-auto-approve", "-input=false", "-no-color");
    const outputs = JSON.parse((await terraform("output", "-json")).stdout) as Record<string, { value: string }>;
    assert.equal(outputs.ubuntu!.value, "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20261119");

    const ec2 = kiln.ec2();
    const ssm = kiln.ssm();
    const instanceOf = async (id: string) => (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
    const web = await instanceOf(outputs.web!.value);
    const [ubuntu] = (await ec2.send(new DescribeImagesCommand({ ImageIds: [web.ImageId!] }))).Images!;
    assert.equal(ubuntu!.Name, outputs.ubuntu!.value);
    assert.deepEqual(web.Tags, [{ Key: "Name", Value: "HelloWorld" }]);
    const al2023 = (await ssm.send(new GetParameterCommand({ Name: "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64" }))).Parameter!
      .Value;
    assert.equal((await instanceOf(outputs.app!.value)).ImageId, al2023);

    const golden = (await ssm.send(new GetParameterCommand({ Name: "/images/golden" }))).Parameter!;
    assert.deepEqual([golden.Value, golden.DataType, golden.Version], [web.ImageId, "aws:ec2:image", 1]);
    assert.deepEqual((await ssm.send(new ListTagsForResourceCommand({ ResourceType: "Parameter", ResourceId: "/images/golden" }))).TagList, [
      { Key: "Team", Value: "images" },
    ]);
    assert.equal(
      (await ssm.send(new GetParameterCommand({ Name: "/images/password", WithDecryption: true }))).Parameter!.Value,
      "correct horse battery staple",
    );

    // A second plan sees nothing to change (exit code 0 with -detailed-exitcode).
    await terraform("plan", "-detailed-exitcode", "-input=false", "-no-color");

    await terraform("destroy", "-auto-approve", "-input=false", "-no-color");
    assert.deepEqual((await ssm.send(new DescribeParametersCommand({}))).Parameters, []);
    assert.equal((await instanceOf(outputs.web!.value)).State!.Name, "terminated");
  });
});
