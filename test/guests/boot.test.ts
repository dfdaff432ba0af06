// Instances that really boot: a Debian 12 disk made from Debian's packages
// (scripts/debian-image.sh) is imported through ImportImage and launched as a qemu guest whose
// disks are Kiln volumes served over NBD. The guest's console, its boot record (a unit that
// appends a line to /var/lib/kiln/boots on its root disk at every boot), CreateImage with its
// reboot, a volume plugged in while it runs, and stop, start, reboot and terminate through the
// SDK's waiters show that it runs, and that what it writes lands in Kiln's snapshots.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import {
  AttachVolumeCommand,
  CreateImageCommand,
  CreateVolumeCommand,
  DescribeImagesCommand,
  DescribeInstanceStatusCommand,
  DescribeInstancesCommand,
  DescribeVolumesCommand,
  DescribeImageAttributeCommand,
  GetConsoleScreenshotCommand,
  GetInstanceUefiDataCommand,
  RebootInstancesCommand,
  RegisterImageCommand,
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
import { decodeAwsUefiData } from "../../src/formats/uefi/aws-uefi-data.js";
import { errorName, fileInSnapshot } from "../helpers/data.js";
import { importDebianImage } from "../helpers/debian-image.js";
import { consoleOf, consoleShows, instanceFile, waiting } from "../helpers/guests.js";
import { LOGIN_PROMPT } from "../../src/vm/qemu-backend.js";
import { startTestKiln, type TestKiln } from "../helpers/kiln.js";

let kiln: TestKiln;
let ec2: EC2Client;
let imageId: string;

/** The command line of the qemu running an instance's guest, from its pid file. */
function qemuCommandOf(instanceId: string): string {
  const pid = readFileSync(instanceFile(kiln.dataDir, instanceId, "qemu.pid"), "utf8").trim();
  return readFileSync(`/proc/${pid}/cmdline`, "latin1").replaceAll("\0", " ");
}

/**
 * edk2's MTC variable in UEFI data: the monotonic count OVMF adds one to at every boot, so it
 * shows which store a guest booted with.
 */
async function bootCount(uefiData: string | undefined): Promise<number | undefined> {
  assert.ok(uefiData, "no UEFI data");
  const mtc = (await decodeAwsUefiData(uefiData)).find((v) => v.name === "MTC" && v.guid === "eb704011-1402-11d3-8e77-00a0c969723b");
  return mtc?.data.readUInt32LE(0);
}
const instanceUefiData = async (instanceId: string) => (await ec2.send(new GetInstanceUefiDataCommand({ InstanceId: instanceId }))).UefiData;

const bootRecords = (console: string) => [...console.matchAll(/kiln-boot-record: boot (\d+)/g)].map((m) => Number(m[1]));

async function stateOf(instanceId: string) {
  const { Reservations } = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
  return Reservations![0]!.Instances![0]!;
}

before(async () => {
  kiln = await startTestKiln(
    { instanceBackend: "qemu" },
    { KILN_VM_MEMORY_MAX_MIB: "1024", KILN_VM_MAX_RUNNING: "3", KILN_VM_STOP_TIMEOUT_MS: "90000", KILN_VM_BOOT_TIMEOUT_MS: "20000" },
  );
  ec2 = kiln.ec2();
  imageId = await importDebianImage(ec2, kiln.s3());
});
after(() => kiln?.close());

describe("instances that boot", () => {
  let instanceId: string;

  it("runs the imported Debian image to its login prompt, with its boot record on the console", async () => {
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
    instanceId = Instances![0]!.InstanceId!;
    assert.equal(Instances![0]!.State!.Name, "pending");
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [instanceId] });
    const console = await consoleShows(ec2, instanceId, LOGIN_PROMPT);
    assert.match(console, /Debian GNU\/Linux 12 \S+ ttyS0/, "the getty's banner on the serial console");
    assert.deepEqual(bootRecords(console), [1], "the first boot is recorded");
    // The CPU has RDRAND, as EC2's do: the kernel's random numbers are ready within its first
    // second, not after minutes of timer jitter under TCG. (The console file holds the whole
    // boot; GetConsoleOutput its last 64 KiB.)
    const wholeConsole = readFileSync(instanceFile(kiln.dataDir, instanceId, "console.log"), "latin1");
    assert.match(wholeConsole, /\[\s*0\.\d+\] random: crng init done/);
    const { InstanceStatuses } = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [instanceId] }));
    assert.equal(InstanceStatuses![0]!.InstanceStatus!.Status, "ok", "the guest is up");
    // The imported disk is uefi (GPT with an EFI system partition): OVMF boots it.
    assert.equal((await stateOf(instanceId)).CurrentInstanceBootMode, "uefi");
    assert.match(qemuCommandOf(instanceId), /OVMF_CODE_4M\.fd/);
    assert.ok(existsSync(instanceFile(kiln.dataDir, instanceId, "uefi-vars.fd")), "a variable store of the instance's own");
    // GetInstanceUefiData reads that store: what OVMF wrote at this, its first, boot.
    const variables = await decodeAwsUefiData((await instanceUefiData(instanceId))!);
    for (const name of ["BootOrder", "Boot0000", "PlatformLang"])
      assert.ok(
        variables.some((v) => v.name === name),
        `OVMF's ${name} in the UEFI data`,
      );
    assert.equal(await bootCount(await instanceUefiData(instanceId)), 1);
    const { ImageData } = await ec2.send(new GetConsoleScreenshotCommand({ InstanceId: instanceId }));
    const png = Buffer.from(ImageData!, "base64");
    assert.equal(png.subarray(1, 4).toString("latin1"), "PNG", "the screen, as a PNG");
    assert.equal(png.subarray(12, 16).toString("latin1"), "IHDR");
    assert.ok(png.readUInt32BE(16) >= 640 && png.readUInt32BE(20) >= 400, "a screen's size");
  });

  it("runs an image with no OS, whose reachability check fails, and refuses guests past the host's budget", async () => {
    // A catalogue image: an empty root disk, so the firmware finds nothing to boot.
    const { Images } = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "architecture", Values: ["x86_64"] }] }));
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: Images![0]!.ImageId, InstanceType: "t3.nano", MinCount: 1, MaxCount: 1 }));
    const stub = Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [stub] });
    const status = async () => (await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [stub] }))).InstanceStatuses![0]!.InstanceStatus!;
    assert.equal((await status()).Status, "initializing");
    // KILN_VM_BOOT_TIMEOUT_MS is 20 s here.
    await new Promise((r) => setTimeout(r, 21_000));
    const impaired = await status();
    assert.equal(impaired.Status, "impaired");
    assert.equal(impaired.Details![0]!.Status, "failed");
    // Impaired since the boot timeout ran out, not since the question was asked.
    const since = impaired.Details![0]!.ImpairedSince!;
    assert.ok(Date.now() - since.getTime() >= 500, `ImpairedSince ${since.toISOString()} is the time of the request`);
    assert.equal((await status()).Details![0]!.ImpairedSince!.getTime(), since.getTime());
    // The filters read the same checks.
    const filtered = async (name: string, value: string) =>
      (await ec2.send(new DescribeInstanceStatusCommand({ Filters: [{ Name: name, Values: [value] }] }))).InstanceStatuses!.map((s) => s.InstanceId);
    assert.ok((await filtered("instance-status.status", "impaired")).includes(stub));
    assert.ok(!(await filtered("instance-status.status", "ok")).includes(stub));
    assert.ok((await filtered("instance-status.reachability", "failed")).includes(stub));
    assert.ok((await filtered("instance-status.status", "ok")).includes(instanceId), "the Debian guest is ok");

    // KILN_VM_MAX_RUNNING is 3 here, and two guests run (the Debian one and this): MinCount 2 does not fit, MaxCount 5 gets one.
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: Images![0]!.ImageId, InstanceType: "t3.nano", MinCount: 2, MaxCount: 2 }))),
      "InsufficientInstanceCapacity",
    );
    const some = await ec2.send(new RunInstancesCommand({ ImageId: Images![0]!.ImageId, InstanceType: "t3.nano", MinCount: 1, MaxCount: 5 }));
    assert.equal(some.Instances!.length, 1, "as many as there is room for");
    const ids = [stub, some.Instances![0]!.InstanceId!];
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: ids }));
    await waitUntilInstanceTerminated(waiting(ec2), { InstanceIds: ids });
  });

  it("plugs in a volume attached while it runs", async () => {
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: (await stateOf(instanceId)).Placement!.AvailabilityZone, Size: 1 }));
    await waitUntilVolumeAvailable(waiting(ec2), { VolumeIds: [volume.VolumeId!] });
    await ec2.send(new AttachVolumeCommand({ VolumeId: volume.VolumeId, InstanceId: instanceId, Device: "/dev/sdf" }));
    // The guest's kernel names the new virtio disk (vdb) as it appears.
    await consoleShows(ec2, instanceId, /virtio_blk \S+: \[vdb\] 2097152 512-byte logical blocks/, 120);
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
    const boots = await fileInSnapshot(kiln.ebs(), root.Ebs!.SnapshotId!, "/var/lib/kiln/boots");
    assert.equal(boots.trim().split("\n").length, 1, `the snapshot holds the first boot's record:\n${boots}`);
    // The instance boots again after the capture: its second boot.
    assert.deepEqual(bootRecords(await consoleShows(ec2, instanceId, /kiln-boot-record: boot 2/)).at(-1), 2);
    // The image has the variables as the guest left them at its power-off (one boot counted).
    const { UefiData } = await ec2.send(new DescribeImageAttributeCommand({ ImageId, Attribute: "uefiData" }));
    assert.equal(await bootCount(UefiData?.Value), 1, "the image's UEFI data is the instance's at the capture");

    const launched = await ec2.send(new RunInstancesCommand({ ImageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
    const copy = launched.Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [copy] });
    // Its disk holds the first instance's record: this is the image's second boot.
    assert.deepEqual(bootRecords(await consoleShows(ec2, copy, /kiln-boot-record: boot 2/)), [2]);
    // And its firmware booted with the image's variables: OVMF counted on from them.
    assert.equal(await bootCount(await instanceUefiData(copy)), 2, "OVMF started from the image's UEFI data");
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [copy] }));
    await waitUntilInstanceTerminated(waiting(ec2), { InstanceIds: [copy] });
  });

  it("stops, starts, reboots and terminates as EC2 does", async () => {
    await ec2.send(new StopInstancesCommand({ InstanceIds: [instanceId] }));
    await waitUntilInstanceStopped(waiting(ec2), { InstanceIds: [instanceId] });
    // The console of a stopped instance is what it said last: its power-off.
    assert.match(await consoleOf(ec2, instanceId), /reboot: Power down|Power-Off|System Power Off/);
    await ec2.send(new StartInstancesCommand({ InstanceIds: [instanceId] }));
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [instanceId] });
    await consoleShows(ec2, instanceId, /kiln-boot-record: boot 3/);
    await consoleShows(ec2, instanceId, LOGIN_PROMPT);
    await ec2.send(new RebootInstancesCommand({ InstanceIds: [instanceId] }));
    await consoleShows(ec2, instanceId, /kiln-boot-record: boot 4/);
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
  it("boots the same disk on SeaBIOS when its image says legacy-bios", async () => {
    const { Images } = await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
    const source = Images![0]!;
    // The imported disk is GPT with an EFI system partition: ImportImage calls it uefi.
    assert.equal(source.BootMode, "uefi");
    const { ImageId } = await ec2.send(
      new RegisterImageCommand({
        Name: "debian-bios",
        Architecture: "x86_64",
        RootDeviceName: source.RootDeviceName,
        BlockDeviceMappings: source.BlockDeviceMappings,
        VirtualizationType: "hvm",
        EnaSupport: true,
        BootMode: "legacy-bios",
      }),
    );
    const { Instances } = await ec2.send(
      new RunInstancesCommand({ ImageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1, InstanceInitiatedShutdownBehavior: "terminate" }),
    );
    const id = Instances![0]!.InstanceId!;
    await consoleShows(ec2, id, LOGIN_PROMPT);
    assert.equal((await stateOf(id)).CurrentInstanceBootMode, "legacy-bios");
    assert.doesNotMatch(qemuCommandOf(id), /OVMF_CODE/, "SeaBIOS, qemu's default firmware");

    // A shutdown from inside reaches the guest: its OS powers off, and the instance terminates
    // as its InstanceInitiatedShutdownBehavior says.
    const response = await kiln.admin(`/_kiln/instances/${id}/shutdown`);
    assert.equal(response.status, 200, response.text);
    await waitUntilInstanceTerminated(waiting(ec2), { InstanceIds: [id] });
    assert.match(await consoleOf(ec2, id), /reboot: Power down|Power-Off|System Power Off/, "the guest's own power-off");
    assert.equal((await stateOf(id)).StateReason!.Code, "Client.InstanceInitiatedShutdown");
  });
});
