// A guest reads its instance metadata as on EC2: the Debian image (imported through ImportImage)
// boots with EC2's SMBIOS identity, so cloud-init picks its Ec2 datasource by itself and runs
// the user data given at launch (multipart MIME: a cloud-config part and a script). The script
// asks the metadata service at 169.254.169.254 for a token (IMDSv2), reads every category with
// it (at fd00:ec2::254 too), tries IMDSv1 (refused: HttpTokens required), and prints what it got
// on the serial console, read back through GetConsoleOutput. What it read must be what
// DescribeInstances says of the instance, and the guest's own address is the private IP EC2
// reports. Then, the guest still running, ModifyInstanceMetadataOptions turns the endpoint off
// (the guest is refused) and on again with tags allowed (the guest reads its Name tag). Then Terraform: an aws_instance with user_data (which runs), key_name and a security
// group; SSH as admin with the key at the public address Terraform reads, refused until a rule
// lets the caller's address reach port 22; no drift on a second plan; destroy.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  DescribeInstancesCommand,
  ImportKeyPairCommand,
  ModifyInstanceMetadataOptionsCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { importDebianImage } from "../helpers/debian-image.js";
import { consoleShows, SSH_PORT } from "../helpers/guests.js";
import { startTestKiln, type TestKiln } from "../helpers/kiln.js";
import { kilnProvider, terraformIn } from "../helpers/terraform.js";
import { run, scratch } from "../helpers/tools.js";

let kiln: TestKiln;
let ec2: EC2Client;
let imageId: string;
before(async () => {
  kiln = await startTestKiln({}, { KILN_INSTANCE_BACKEND: "qemu", KILN_VM_MEMORY_MAX_MIB: "1024" });
  ec2 = kiln.ec2();
  imageId = await importDebianImage(ec2, kiln.s3());
});
after(() => kiln.close());

// Python (cloud-init's own language, so in every image that has cloud-init): IMDSv2 as the SDKs
// do it, then IMDSv1, each result a line `kiln-imds <name>=<value>` on the console.
const USER_DATA = `#!/usr/bin/python3
import json, subprocess, time, urllib.request, urllib.error
BASE = "http://169.254.169.254/latest/"
def ask(path, method="GET", headers={}, base=BASE):
    request = urllib.request.Request(base + path, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
def say(name, value):
    with open("/dev/ttyS0", "w") as console:
        console.write("kiln-imds %s=%s\\n" % (name, json.dumps(value)))
status, token = ask("api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
say("token-status", status)
auth = {"X-aws-ec2-metadata-token": token}
for path in ["ami-id", "ami-launch-index", "block-device-mapping/ami", "block-device-mapping/root", "hostname",
             "local-hostname", "local-ipv4", "public-hostname", "public-ipv4", "instance-id", "instance-type", "mac",
             "placement/availability-zone", "placement/region", "public-keys/0/openssh-key", "security-groups",
             "services/domain"]:
    say("meta-data/" + path, ask("meta-data/" + path, headers=auth)[1])
mac = ask("meta-data/mac", headers=auth)[1]
for path in ["device-number", "subnet-id", "vpc-id", "security-group-ids", "local-ipv4s"]:
    say("mac/" + path, ask("meta-data/network/interfaces/macs/%s/%s" % (mac, path), headers=auth)[1])
say("user-data", ask("user-data", headers=auth)[1].splitlines()[0])
say("tags-status", ask("meta-data/tags/instance/Name", headers=auth)[0])
say("v1-status", ask("meta-data/instance-id")[0])
say("ipv6", ask("meta-data/instance-id", headers=auth, base="http://[fd00:ec2::254]/latest/"))
say("identity", json.loads(ask("dynamic/instance-identity/document", headers=auth)[1])["instanceId"])
address = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
say("address", address.split()[3].split("/")[0] if address else "")
say("cloud-config", open("/etc/kiln-from-cloud-config").read())
say("done", True)
# Then the test changes the metadata options from outside: the endpoint off, then on again with
# the instance's tags in the metadata.
deadline = time.time() + 300
while time.time() < deadline:
    status = ask("api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})[0]
    if status != 200:
        say("endpoint-off", [status, ask("meta-data/instance-id")[0]])
        break
    time.sleep(1)
while time.time() < deadline:
    status, token = ask("api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    if status == 200:
        tag = ask("meta-data/tags/instance/Name", headers={"X-aws-ec2-metadata-token": token})
        if tag[0] == 200:
            say("tag-Name", tag[1])
            break
    time.sleep(1)
`;

// Multipart MIME, as Terraform's cloudinit_config and the AWS CLI's users send it: a
// #cloud-config part that writes a file, and the script above as a shell-script part.
const BOUNDARY = "==KILN-BOUNDARY==";
const MULTIPART_USER_DATA = [
  `Content-Type: multipart/mixed; boundary="${BOUNDARY}"`,
  "MIME-Version: 1.0",
  "",
  `--${BOUNDARY}`,
  'Content-Type: text/cloud-config; charset="us-ascii"',
  "MIME-Version: 1.0",
  "",
  "#cloud-config",
  "write_files:",
  "  - path: /etc/kiln-from-cloud-config",
  "    content: written by the cloud-config part",
  "",
  `--${BOUNDARY}`,
  'Content-Type: text/x-shellscript; charset="us-ascii"',
  "MIME-Version: 1.0",
  "",
  USER_DATA,
  `--${BOUNDARY}--`,
  "",
].join("\n");

/** ssh to `address` as admin with the key in `keyFile`: its exit code and output. */
async function ssh(keyFile: string, address: string, command: string): Promise<{ code: number | null; output: string }> {
  const child = spawn(
    "ssh",
    [
      ...["-i", keyFile, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"],
      ...["-p", String(SSH_PORT), `admin@${address}`, command],
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, output };
}

describe("the guest's instance metadata", () => {
  it("cloud-init finds EC2 and runs the user data, which reads IMDSv2 as DescribeInstances describes the instance", async () => {
    const keyDir = scratch();
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "kiln-imds", "-f", join(keyDir, "key")]);
    const publicKey = readFileSync(join(keyDir, "key.pub"), "utf8").trim();
    await ec2.send(new ImportKeyPairCommand({ KeyName: "imds-guest", PublicKeyMaterial: Buffer.from(publicKey) }));
    const { Instances } = await ec2.send(
      new RunInstancesCommand({
        ImageId: imageId,
        InstanceType: "t3.micro",
        MinCount: 1,
        MaxCount: 1,
        KeyName: "imds-guest",
        UserData: Buffer.from(MULTIPART_USER_DATA).toString("base64"),
        MetadataOptions: { HttpTokens: "required", HttpProtocolIpv6: "enabled" },
        TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "Name", Value: "imds-guest" }] }],
      }),
    );
    const id = Instances![0]!.InstanceId!;
    const readConsole = (said: string) => new Map([...said.matchAll(/^kiln-imds ([^=]+)=(.*?)\r?$/gm)].map((m) => [m[1]!, JSON.parse(m[2]!)]));
    try {
      const read = readConsole(await consoleShows(ec2, id, /kiln-imds done=true/));
      const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
      const nic = instance.NetworkInterfaces![0]!;
      assert.equal(read.get("token-status"), 200, "a token by PUT");
      // Every category, as DescribeInstances describes the same instance.
      const expected: Record<string, unknown> = {
        "meta-data/ami-id": imageId,
        "meta-data/ami-launch-index": String(instance.AmiLaunchIndex),
        "meta-data/block-device-mapping/ami": instance.RootDeviceName!.replace(/^\/dev\//, ""),
        "meta-data/block-device-mapping/root": instance.RootDeviceName,
        "meta-data/hostname": instance.PrivateDnsName,
        "meta-data/local-hostname": instance.PrivateDnsName,
        "meta-data/local-ipv4": instance.PrivateIpAddress,
        "meta-data/public-hostname": instance.PublicDnsName,
        "meta-data/public-ipv4": instance.PublicIpAddress,
        "meta-data/instance-id": id,
        "meta-data/instance-type": "t3.micro",
        "meta-data/mac": nic.MacAddress,
        "meta-data/placement/availability-zone": instance.Placement!.AvailabilityZone,
        "meta-data/placement/region": "us-east-1",
        // As EC2 serves it: the key, its comment replaced by the key pair's name.
        "meta-data/public-keys/0/openssh-key": `${publicKey.split(" ").slice(0, 2).join(" ")} imds-guest\n`,
        "meta-data/security-groups": instance.SecurityGroups!.map((g) => g.GroupName).join("\n"),
        "meta-data/services/domain": "amazonaws.com",
        "mac/device-number": String(nic.Attachment!.DeviceIndex),
        "mac/subnet-id": instance.SubnetId,
        "mac/vpc-id": instance.VpcId,
        "mac/security-group-ids": instance.SecurityGroups!.map((g) => g.GroupId).join("\n"),
        "mac/local-ipv4s": instance.PrivateIpAddress,
        "user-data": MULTIPART_USER_DATA.split("\n")[0],
      };
      for (const [path, value] of Object.entries(expected)) assert.equal(read.get(path), value, path);
      assert.equal(read.get("tags-status"), 404, "no tags in the metadata until InstanceMetadataTags allows them");
      assert.equal(read.get("identity"), id);
      assert.equal(read.get("v1-status"), 401, "IMDSv1 refused: tokens are required");
      assert.deepEqual(read.get("ipv6"), [200, id], "the IPv6 endpoint, enabled");
      assert.equal(read.get("cloud-config"), "written by the cloud-config part", "both parts of the multipart user data ran");
      assert.equal(read.get("address"), instance.PrivateIpAddress, "the guest's own address is the private IP");

      // The endpoint turned off while the guest runs: its next token request is refused, and so
      // is IMDSv1. On again with tags allowed: the guest reads its Name tag.
      await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpEndpoint: "disabled" }));
      assert.deepEqual(readConsole(await consoleShows(ec2, id, /kiln-imds endpoint-off=/)).get("endpoint-off"), [403, 403]);
      await ec2.send(new ModifyInstanceMetadataOptionsCommand({ InstanceId: id, HttpEndpoint: "enabled", InstanceMetadataTags: "enabled" }));
      assert.equal(readConsole(await consoleShows(ec2, id, /kiln-imds tag-Name=/)).get("tag-Name"), "imds-guest");
    } finally {
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    }
  });

  it("Terraform: aws_instance with user_data, key_name and a security group; SSH as the group allows; no drift; destroy", async () => {
    const dir = scratch();
    await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "kiln-terraform", "-f", join(dir, "key")]);
    const publicKey = readFileSync(join(dir, "key.pub"), "utf8").trim();
    const configuration = (ingress: string) => `${kilnProvider(kiln.url)}
resource "aws_key_pair" "guest" {
  key_name   = "terraform-guest"
  public_key = "${publicKey}"
}
resource "aws_security_group" "guest" {
  name        = "terraform-guest"
  description = "SSH from this host"
${ingress}
}
resource "aws_instance" "guest" {
  ami                    = "${imageId}"
  instance_type          = "t3.micro"
  key_name               = aws_key_pair.guest.key_name
  vpc_security_group_ids = [aws_security_group.guest.id]
  user_data              = <<-EOT
    #!/bin/sh
    echo kiln-terraform-user-data $(cat /var/lib/cloud/data/instance-id) > /dev/ttyS0
  EOT
}
output "id" { value = aws_instance.guest.id }
output "public_ip" { value = aws_instance.guest.public_ip }
`;
    const SSH_RULE = `  ingress {
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["127.0.0.1/32"]
  }`;
    const terraform = terraformIn(dir);
    writeFileSync(join(dir, "main.tf"), configuration(""));
    await terraform("init", "-input=false");
    await terraform("apply", "-auto-approve", "-input=false");
    const outputs = JSON.parse((await terraform("output", "-json")).stdout);
    const id: string = outputs.id.value;
    const address: string = outputs.public_ip.value;
    try {
      assert.match(address, /^127\./, "a public address this host reaches");
      // The user data ran (cloud-init, from the metadata service), in this instance.
      await consoleShows(ec2, id, new RegExp(`kiln-terraform-user-data ${id}`));
      const keyFile = join(dir, "key");
      const refused = await ssh(keyFile, address, "true");
      assert.notEqual(refused.code, 0, `no rule for port 22 yet: ${refused.output}`);

      writeFileSync(join(dir, "main.tf"), configuration(SSH_RULE));
      await terraform("apply", "-auto-approve", "-input=false");
      let answered = { code: null as number | null, output: "" };
      for (let tries = 0; tries < 30 && answered.code !== 0; tries++) {
        answered = await ssh(keyFile, address, "cat /var/lib/cloud/data/instance-id; id -un");
        if (answered.code !== 0) await new Promise((resolve) => setTimeout(resolve, 2000));
      }
      assert.equal(answered.code, 0, answered.output);
      assert.deepEqual(answered.output.trim().split("\n").slice(-2), [id, "admin"], "in as admin, with the launch key");

      // Nothing drifts: Kiln describes what Terraform made as Terraform made it.
      const plan = await terraform("plan", "-detailed-exitcode", "-input=false").then(
        () => 0,
        (error: { code?: number; stdout?: string }) => {
          assert.fail(`terraform plan found changes (exit ${error.code}):\n${error.stdout}`);
        },
      );
      assert.equal(plan, 0);
    } finally {
      await terraform("destroy", "-auto-approve", "-input=false");
    }
    const after = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
    assert.equal(after.State!.Name, "terminated");
  });
});
