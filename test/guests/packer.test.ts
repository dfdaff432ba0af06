// Packer's amazon-ebs builder (Debian's `packer`) with a real communicator: it launches the
// Debian image (imported through ImportImage) with a temporary key pair and security group,
// reaches the guest by SSH at the public address DescribeInstances reports, runs a shell
// provisioner that writes a file, stops the instance and captures it with CreateImage. The file
// must be on the new AMI's root snapshot; the AMI, stored to S3 with CreateStoreImageTask and
// restored from that object on a second Kiln, must boot there with the file still in it.
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  CreateRestoreImageTaskCommand,
  CreateStoreImageTaskCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeKeyPairsCommand,
  DescribeStoreImageTasksCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceTerminated,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { fileInSnapshot } from "../helpers/data.js";
import { importDebianImage } from "../helpers/debian-image.js";
import { consoleShows, SSH_PORT, waiting } from "../helpers/guests.js";
import { startTestKiln, type TestKiln } from "../helpers/kiln.js";
import { amazonEbsOn, packerEnv } from "../helpers/packer.js";
import { run, scratch } from "../helpers/tools.js";

const PROVISIONED = "provisioned-by-packer";

const guestKiln = () => startTestKiln({}, { KILN_INSTANCE_BACKEND: "qemu", KILN_VM_MEMORY_MAX_MIB: "1024" });
let builder: TestKiln;
let restorer: TestKiln;
let sourceImage: string;
before(async () => {
  [builder, restorer] = await Promise.all([guestKiln(), guestKiln()]);
  sourceImage = await importDebianImage(builder.ec2(), builder.s3());
});
after(() => Promise.all([builder?.close(), restorer?.close()]));

describe("Packer with the ssh communicator", () => {
  it("provisions over SSH and captures an AMI with the file, which stored to S3 and restored on a second Kiln boots with it", async () => {
    const dir = scratch("kiln-packer-guest-");
    const template = {
      builders: [
        {
          ...amazonEbsOn(builder.url),
          source_ami: sourceImage,
          instance_type: "t3.micro",
          ami_name: "kiln-packer-provisioned",
          communicator: "ssh",
          ssh_username: "admin",
          ssh_interface: "public_ip",
          ssh_port: SSH_PORT,
          ssh_timeout: "8m",
        },
      ],
      provisioners: [{ type: "shell", inline: [`echo ${PROVISIONED} | sudo tee /etc/kiln-packer`, "sync"] }],
    };
    writeFileSync(join(dir, "template.json"), JSON.stringify(template, null, 2));
    // The SDK's waiters polling every 2 s rather than 15.
    const env = { ...packerEnv(dir), AWS_POLL_DELAY_SECONDS: "2" };
    const output = await run("packer", ["build", "-machine-readable", "-color=false", "template.json"], { cwd: dir, env });
    assert.match(output, new RegExp(`ui,message,.*${PROVISIONED}`), "the provisioner ran in the guest and printed what it wrote");
    const imageId = /artifact,0,id,us-east-1:(ami-[0-9a-f]+)/.exec(output)?.[1];
    assert.ok(imageId, `Packer printed no artifact:\n${output.slice(-3000)}`);

    // The file is on the captured AMI's root snapshot.
    const ec2 = builder.ec2();
    const [image] = (await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images!;
    const root = image!.BlockDeviceMappings!.find((m) => m.DeviceName === image!.RootDeviceName)!;
    assert.equal((await fileInSnapshot(builder.ebs(), root.Ebs!.SnapshotId!, "/etc/kiln-packer")).trim(), PROVISIONED);
    // Packer's temporaries are gone: the builder instance terminated, its key pair deleted.
    const instances = (await ec2.send(new DescribeInstancesCommand({}))).Reservations!.flatMap((r) => r.Instances!);
    assert.deepEqual(
      instances.map((i) => i.State!.Name),
      ["terminated"],
    );
    assert.deepEqual((await ec2.send(new DescribeKeyPairsCommand({}))).KeyPairs, []);

    // Stored to S3 on this Kiln, the object copied to the second, restored and booted there.
    const s3 = builder.s3();
    await s3.send(new CreateBucketCommand({ Bucket: "packer-amis" }));
    const { ObjectKey } = await ec2.send(new CreateStoreImageTaskCommand({ ImageId: imageId, Bucket: "packer-amis" }));
    for (const deadline = Date.now() + 300_000; ; ) {
      const [task] = (await ec2.send(new DescribeStoreImageTasksCommand({ ImageIds: [imageId] }))).StoreImageTaskResults!;
      if (task!.StoreTaskState === "Completed") break;
      assert.notEqual(task!.StoreTaskState, "Failed", task!.StoreTaskFailureReason);
      assert.ok(Date.now() < deadline, `the store task is still ${task!.StoreTaskState}`);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const stored = await s3.send(new GetObjectCommand({ Bucket: "packer-amis", Key: ObjectKey }));
    const there = restorer.s3();
    await there.send(new CreateBucketCommand({ Bucket: "restore-from" }));
    await there.send(new PutObjectCommand({ Bucket: "restore-from", Key: ObjectKey, Body: stored.Body, ContentLength: stored.ContentLength }));
    const other = restorer.ec2();
    const restored = await other.send(new CreateRestoreImageTaskCommand({ Bucket: "restore-from", ObjectKey, Name: "packer-restored" }));
    await waitUntilImageAvailable(waiting(other), { ImageIds: [restored.ImageId!] });

    const userData = `#!/bin/sh\necho "kiln-packer-file $(cat /etc/kiln-packer)" > /dev/ttyS0\n`;
    const { Instances } = await other.send(
      new RunInstancesCommand({
        ImageId: restored.ImageId,
        InstanceType: "t3.micro",
        MinCount: 1,
        MaxCount: 1,
        UserData: Buffer.from(userData).toString("base64"),
      }),
    );
    const instanceId = Instances![0]!.InstanceId!;
    await consoleShows(other, instanceId, new RegExp(`kiln-packer-file ${PROVISIONED}`));
    await other.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    await waitUntilInstanceTerminated(waiting(other), { InstanceIds: [instanceId] });
  });
});
