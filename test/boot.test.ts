// Instances that really boot: a Debian 12 disk made from Debian's packages
// (scripts/debian-image.sh) is imported through ImportImage and launched as a qemu guest whose
// disks are Kiln volumes served over NBD. The guest's console, its boot record (a unit that
// appends a line to /var/lib/kiln/boots on its root disk at every boot), CreateImage with its
// reboot, a volume plugged in while it runs, and stop, start, reboot and terminate through the
// SDK's waiters show that it runs, and that what it writes lands in Kiln's snapshots.
import assert from "node:assert/strict";
import { openSync, closeSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  AttachVolumeCommand,
  CreateImageCommand,
  CreateVolumeCommand,
  DescribeImagesCommand,
  DescribeImportImageTasksCommand,
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  GetConsoleOutputCommand,
  ImportImageCommand,
  RebootInstancesCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  waitUntilInstanceTerminated,
  waitUntilVolumeAvailable,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand } from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { createReadStream } from "node:fs";
import { readSnapshotBlocks, BLOCK } from "./helpers/data.js";
import { debianImage } from "./helpers/debian-image.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";
import { run, scratch } from "./helpers/tools.js";

const BUCKET = "boot-images";
/** Generous for TCG on two shared cores; a boot takes about a minute there. */
const BOOT_SECONDS = 300;
const waiting = (client: EC2Client) => ({ client, maxWaitTime: BOOT_SECONDS, minDelay: 1, maxDelay: 2 });

let kiln: TestKiln;
let ec2: EC2Client;
let imageId: string;

/** The console so far, decoded. */
async function consoleOf(instanceId: string): Promise<string> {
  const { Output } = await ec2.send(new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: true }));
  return Buffer.from(Output ?? "", "base64").toString("latin1");
}

/** Waits until the console matches `pattern` (counting from `since` characters of it); what it said. */
async function consoleShows(instanceId: string, pattern: RegExp, seconds = BOOT_SECONDS): Promise<string> {
  const deadline = Date.now() + seconds * 1000;
  let said = "";
  while (Date.now() < deadline) {
    said = await consoleOf(instanceId);
    if (pattern.test(said)) return said;
    await new Promise((r) => setTimeout(r, 1000));
  }
  assert.fail(`the console of ${instanceId} never showed ${pattern}; its last lines:\n${said.slice(-2000)}`);
}

const bootRecords = (console: string) => [...console.matchAll(/kiln-boot-record: boot (\d+)/g)].map((m) => Number(m[1]));

async function stateOf(instanceId: string) {
  const { Reservations } = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return Reservations![0]!.Instances![0]!;
}

/** The file at `path` on the ext4 root (GPT partition 1) of a snapshot, read back through the EBS direct APIs. */
async function fileInSnapshot(snapshotId: string, path: string): Promise<string> {
  const disk = join(scratch(), "snapshot.raw");
  const fd = openSync(disk, "w");
  let end = 0;
  for (const [index, data] of await readSnapshotBlocks(kiln.ebs(), snapshotId)) {
    writeSync(fd, data, 0, data.length, index * BLOCK);
    end = Math.max(end, (index + 1) * BLOCK);
  }
  closeSync(fd);
  const table = JSON.parse(await run("sfdisk", ["--json", disk])) as { partitiontable: { sectorsize?: number; partitions: { node: string; start: number }[] } };
  const root = table.partitiontable.partitions.find((p) => p.node.endsWith("1"))!;
  const offset = root.start * (table.partitiontable.sectorsize ?? 512);
  return run("debugfs", ["-R", `cat ${path}`, `${disk}?offset=${offset}`]);
}

before(async () => {
  const raw = await debianImage();
  kiln = await startTestKiln(
    { instanceBackend: "qemu" },
    { KILN_VM_MEMORY_MAX_MIB: "1024", KILN_VM_STOP_TIMEOUT_MS: "90000", KILN_VM_BOOT_TIMEOUT_MS: "20000" },
  );
  ec2 = kiln.ec2();
  // Uploaded as qcow2 (allocated clusters only), imported as users import theirs.
  const qcow2 = join(scratch(), "debian-12.qcow2");
  await run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);
  const s3 = kiln.s3();
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  await new Upload({ client: s3, params: { Bucket: BUCKET, Key: "debian-12.qcow2", Body: createReadStream(qcow2) } }).done();
  const { ImportTaskId } = await ec2.send(new ImportImageCommand({ DiskContainers: [{ Format: "qcow2", Url: `s3://${BUCKET}/debian-12.qcow2` }] }));
  for (;;) {
    const { ImportImageTasks } = await ec2.send(new DescribeImportImageTasksCommand({ ImportTaskIds: [ImportTaskId!] }));
    const task = ImportImageTasks![0]!;
    if (task.Status === "completed") {
      imageId = task.ImageId!;
      break;
    }
    assert.notEqual(task.Status, "deleted", `the import failed: ${task.StatusMessage}`);
    await new Promise((r) => setTimeout(r, 500));
  }
});
after(() => kiln?.close());

describe("instances that boot", () => {
  let instanceId: string;

  it("runs the imported Debian image to its login prompt, with its boot record on the console", async () => {
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
    instanceId = Instances![0]!.InstanceId!;
    assert.equal(Instances![0]!.State!.Name, "pending");
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [instanceId] });
    const console = await consoleShows(instanceId, /login: ?$/m);
    assert.match(console, /Debian GNU\/Linux 12 \S+ ttyS0/, "the getty's banner on the serial console");
    assert.deepEqual(bootRecords(console), [1], "the first boot is recorded");
    const { InstanceStatuses } = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [instanceId] }));
    assert.equal(InstanceStatuses![0]!.InstanceStatus!.Status, "ok", "the guest is up");
  });

  it("plugs in a volume attached while it runs", async () => {
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: (await stateOf(instanceId)).Placement!.AvailabilityZone, Size: 1 }));
    await waitUntilVolumeAvailable(waiting(ec2), { VolumeIds: [volume.VolumeId!] });
    await ec2.send(new AttachVolumeCommand({ VolumeId: volume.VolumeId, InstanceId: instanceId, Device: "/dev/sdf" }));
    // The guest's kernel names the new virtio disk (vdb) as it appears.
    await consoleShows(instanceId, /virtio_blk \S+: \[vdb\] 2097152 512-byte logical blocks/, 120);
    const { Volumes } = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volume.VolumeId!] }));
    assert.equal(Volumes![0]!.State, "in-use");
  });

  it("captures with CreateImage's reboot what the guest wrote, and boots the new image", async () => {
    const { ImageId } = await ec2.send(new CreateImageCommand({ InstanceId: instanceId, Name: "debian-after-one-boot" }));
    assert.equal((await stateOf(instanceId)).State!.Name, "stopping", "the guest powers off first");
    await waitUntilImageAvailable(waiting(ec2), { ImageIds: [ImageId!] });
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [instanceId] });
    const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }));
    const root = Images![0]!.BlockDeviceMappings!.find((m) => m.DeviceName === Images![0]!.RootDeviceName)!;
    const boots = await fileInSnapshot(root.Ebs!.SnapshotId!, "/var/lib/kiln/boots");
    assert.equal(boots.trim().split("\n").length, 1, `the snapshot holds the first boot's record:\n${boots}`);
    // The instance boots again after the capture: its second boot.
    assert.deepEqual(bootRecords(await consoleShows(instanceId, /kiln-boot-record: boot 2/)).at(-1), 2);

    const launched = await ec2.send(new RunInstancesCommand({ ImageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
    const copy = launched.Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [copy] });
    // Its disk holds the first instance's record: this is the image's second boot.
    assert.deepEqual(bootRecords(await consoleShows(copy, /kiln-boot-record: boot 2/)), [2]);
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [copy] }));
    await waitUntilInstanceTerminated(waiting(ec2), { InstanceIds: [copy] });
  });

  it("stops, starts, reboots and terminates as EC2 does", async () => {
    await ec2.send(new StopInstancesCommand({ InstanceIds: [instanceId] }));
    await waitUntilInstanceStopped(waiting(ec2), { InstanceIds: [instanceId] });
    // The console of a stopped instance is what it said last: its power-off.
    assert.match(await consoleOf(instanceId), /reboot: Power down|Power-Off|System Power Off/);
    await ec2.send(new StartInstancesCommand({ InstanceIds: [instanceId] }));
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [instanceId] });
    await consoleShows(instanceId, /kiln-boot-record: boot 3/);
    await consoleShows(instanceId, /login: ?$/m);
    await ec2.send(new RebootInstancesCommand({ InstanceIds: [instanceId] }));
    await consoleShows(instanceId, /kiln-boot-record: boot 4/);
    assert.equal((await stateOf(instanceId)).State!.Name, "running", "a reboot keeps it running");
    const volumes = (await stateOf(instanceId)).BlockDeviceMappings!.map((m) => m.Ebs!.VolumeId!);
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] }));
    await waitUntilInstanceTerminated(waiting(ec2), { InstanceIds: [instanceId] });
    const { Volumes } = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: "volume-id", Values: volumes }] }));
    assert.deepEqual(
      Volumes!.map((v) => v.State),
      ["available"],
      "the root volume went with the instance; the attached one stays",
    );
  });
});
