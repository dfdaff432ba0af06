// A guest reads its instance metadata as on EC2: the Debian image (imported through ImportImage)
// boots with EC2's SMBIOS identity, so cloud-init picks its Ec2 datasource by itself and runs
// the user data given at launch; the script asks the metadata service at 169.254.169.254 for a
// token (IMDSv2), reads categories with it (at fd00:ec2::254 too), tries IMDSv1 (refused:
// HttpTokens required), and
// prints what it got on the serial console, read back through GetConsoleOutput. What it read
// must be what DescribeInstances says of the instance, and the guest's own address is the
// private IP EC2 reports. With the launch key pair, admin gets in by SSH at the public address
// DescribeInstances reports, once a security group rule lets the caller's address reach port 22.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  AuthorizeSecurityGroupIngressCommand,
  CreateKeyPairCommand,
  CreateSecurityGroupCommand,
  DescribeInstancesCommand,
  DescribeVpcsCommand,
  RevokeSecurityGroupIngressCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { importDebianImage } from "../helpers/debian-image.js";
import { consoleShows } from "../helpers/guests.js";
import { startTestKiln, type TestKiln } from "../helpers/kiln.js";
import { scratch } from "../helpers/tools.js";

/** SSH on a guest's public address: 22 as Kiln's default when it runs as root, as the suite does in CI; else 2222. */
const SSH_PORT = process.getuid?.() === 0 ? 22 : 2222;

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
import json, subprocess, urllib.request, urllib.error
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
for path in ["meta-data/instance-id", "meta-data/local-ipv4", "meta-data/mac", "meta-data/instance-type",
             "meta-data/placement/availability-zone", "meta-data/hostname"]:
    say(path, ask(path, headers=auth)[1])
say("v1-status", ask("meta-data/instance-id")[0])
say("ipv6", ask("meta-data/instance-id", headers=auth, base="http://[fd00:ec2::254]/latest/"))
say("identity", json.loads(ask("dynamic/instance-identity/document", headers=auth)[1])["instanceId"])
address = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
say("address", address.split()[3].split("/")[0] if address else "")
say("done", True)
`;

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
    const { Instances } = await ec2.send(
      new RunInstancesCommand({
        ImageId: imageId,
        InstanceType: "t3.micro",
        MinCount: 1,
        MaxCount: 1,
        UserData: Buffer.from(USER_DATA).toString("base64"),
        MetadataOptions: { HttpTokens: "required", HttpProtocolIpv6: "enabled" },
      }),
    );
    const id = Instances![0]!.InstanceId!;
    try {
      const said = await consoleShows(ec2, id, /kiln-imds done=true/);
      const read = new Map([...said.matchAll(/^kiln-imds ([^=]+)=(.*?)\r?$/gm)].map((m) => [m[1]!, JSON.parse(m[2]!)]));
      const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
      assert.equal(read.get("token-status"), 200, "a token by PUT");
      assert.equal(read.get("meta-data/instance-id"), id);
      assert.equal(read.get("meta-data/local-ipv4"), instance.PrivateIpAddress);
      assert.equal(read.get("meta-data/mac"), instance.NetworkInterfaces![0]!.MacAddress);
      assert.equal(read.get("meta-data/instance-type"), "t3.micro");
      assert.equal(read.get("meta-data/placement/availability-zone"), instance.Placement!.AvailabilityZone);
      assert.equal(read.get("meta-data/hostname"), instance.PrivateDnsName);
      assert.equal(read.get("identity"), id);
      assert.equal(read.get("v1-status"), 401, "IMDSv1 refused: tokens are required");
      assert.deepEqual(read.get("ipv6"), [200, id], "the IPv6 endpoint, enabled");
      assert.equal(read.get("address"), instance.PrivateIpAddress, "the guest's own address is the private IP");
    } finally {
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    }
  });

  it("takes the launch key pair for admin and lets SSH in at the public address only as its security groups allow", async () => {
    const key = await ec2.send(new CreateKeyPairCommand({ KeyName: "guest-ssh" }));
    const keyFile = join(scratch(), "guest-ssh.pem");
    writeFileSync(keyFile, key.KeyMaterial!, { mode: 0o600 });
    const vpcId = (await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: "is-default", Values: ["true"] }] }))).Vpcs![0]!.VpcId!;
    const { GroupId } = await ec2.send(new CreateSecurityGroupCommand({ GroupName: "ssh-from-here", Description: "ssh", VpcId: vpcId }));
    const { Instances } = await ec2.send(
      new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1, KeyName: "guest-ssh", SecurityGroupIds: [GroupId!] }),
    );
    const id = Instances![0]!.InstanceId!;
    try {
      await consoleShows(ec2, id, /login: ?$/m);
      const instance = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }))).Reservations![0]!.Instances![0]!;
      const address = instance.PublicIpAddress!;
      assert.match(address, /^127\./, "a public address this host reaches");
      // No rule for port 22 yet: no way in.
      const refused = await ssh(keyFile, address, "true");
      assert.notEqual(refused.code, 0, refused.output);
      await ec2.send(
        new AuthorizeSecurityGroupIngressCommand({
          GroupId,
          IpPermissions: [{ IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "127.0.0.1/32" }] }],
        }),
      );
      // sshd starts after the login prompt may show, and the key arrives with cloud-init.
      let answered = { code: null as number | null, output: "" };
      for (let tries = 0; tries < 30 && answered.code !== 0; tries++) {
        answered = await ssh(keyFile, address, "cat /var/lib/cloud/data/instance-id; id -un");
        if (answered.code !== 0) await new Promise((resolve) => setTimeout(resolve, 2000));
      }
      assert.equal(answered.code, 0, answered.output);
      assert.deepEqual(answered.output.trim().split("\n").slice(-2), [id, "admin"]);
      // The rule gone, the guest that just answered is out of reach again.
      const rule = { IpProtocol: "tcp", FromPort: 22, ToPort: 22, IpRanges: [{ CidrIp: "127.0.0.1/32" }] };
      await ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId, IpPermissions: [rule] }));
      const revoked = await ssh(keyFile, address, "true");
      assert.notEqual(revoked.code, 0, revoked.output);
    } finally {
      await ec2.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
    }
  });
});
