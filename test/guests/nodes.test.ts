// A guest on several nodes: it runs on the node that booted it; a stop, a reboot, an attach and
// a detach asked of another node reach it there; a start asked of another node boots it on that
// one; and when that node is killed, the other takes the instance over once its hold lapses and
// boots it again, its flushed writes kept.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  RebootInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
  waitUntilVolumeAvailable,
} from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import { importDebianImage } from "../helpers/debian-image.js";
import { consoleShows, waiting } from "../helpers/guests.js";
import { LOGIN_PROMPT } from "../../src/vm/qemu-backend.js";
import { sharedStores } from "../helpers/kiln.js";
import { spawnKiln } from "../helpers/process.js";

const LEASE_MS = 2000;
const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const ec2Of = (url: string) => new EC2Client({ endpoint: url, region: "us-east-1", credentials, maxAttempts: 1 });

describe("a guest on two nodes", () => {
  it("stops and starts through either node, and is booted again by the other when its node dies", async () => {
    const shared = await sharedStores();
    const node = (nodeId: string) =>
      spawnKiln(["serve", "--port", "0", "--data-dir", shared.folder()], {
        ...shared.env,
        KILN_NODE_ID: nodeId,
        KILN_TASK_LEASE_MS: String(LEASE_MS),
        KILN_INSTANCE_BACKEND: "qemu",
        KILN_VM_MEMORY_MAX_MIB: "1024",
      });
    const a = await node("node-a");
    const b = await node("node-b");
    try {
      const [onA, onB] = [ec2Of(a.url), ec2Of(b.url)];
      const imageId = await importDebianImage(onA, new S3Client({ endpoint: a.url, region: "us-east-1", credentials, forcePathStyle: true }));
      const { Instances } = await onA.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
      const id = Instances![0]!.InstanceId!;
      await consoleShows(onA, id, LOGIN_PROMPT);

      // Asked of B, carried out by A, whose qemu runs the guest: an orderly power-off.
      await onB.send(new StopInstancesCommand({ InstanceIds: [id] }));
      await waitUntilInstanceStopped(waiting(onB), { InstanceIds: [id] });
      assert.match(await consoleShows(onA, id, /reboot: Power down/), /kiln-boot-record: boot 1/);

      // Started through B: B boots it.
      await onB.send(new StartInstancesCommand({ InstanceIds: [id] }));
      await waitUntilInstanceRunning(waiting(onB), { InstanceIds: [id] });
      await consoleShows(onB, id, /kiln-boot-record: boot 2/);
      await consoleShows(onB, id, LOGIN_PROMPT);

      // Attached through A, plugged in by B, whose qemu runs the guest; detached through A, which
      // answers once B has let go of it.
      const { VolumeId } = await onA.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 1 }));
      await waitUntilVolumeAvailable(waiting(onA), { VolumeIds: [VolumeId!] });
      await onA.send(new AttachVolumeCommand({ VolumeId, InstanceId: id, Device: "/dev/sdf" }));
      await consoleShows(onB, id, /virtio_blk \S+: \[vdb\] 2097152 512-byte logical blocks/, 120);
      await onA.send(new DetachVolumeCommand({ VolumeId }));
      const { Volumes } = await onA.send(new DescribeVolumesCommand({ VolumeIds: [VolumeId!] }));
      assert.equal(Volumes![0]!.State, "available");

      // Rebooted through A: B reboots it.
      await onA.send(new RebootInstancesCommand({ InstanceIds: [id] }));
      await consoleShows(onB, id, /kiln-boot-record: boot 3/);

      // B dies; once its hold lapses, A boots the instance again, the third boot's record kept.
      assert.equal(await b.stop("SIGKILL"), null);
      await consoleShows(onA, id, /kiln-boot-record: boot 4/);
      const { Reservations } = await onA.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
      assert.equal(Reservations![0]!.Instances![0]!.State!.Name, "running");
      await onA.send(new TerminateInstancesCommand({ InstanceIds: [id] }));
      await waitUntilInstanceTerminated(waiting(onA), { InstanceIds: [id] });
    } finally {
      await b.stop("SIGKILL");
      await a.stop();
      await shared.drop();
    }
  });
});
