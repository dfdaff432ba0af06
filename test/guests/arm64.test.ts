// arm64 instances run as qemu-system-aarch64 guests on AAVMF (UEFI for arm64), their disks
// Kiln volumes as for x86_64 guests. The catalogue's arm64 images hold no operating system, so
// the firmware finds the root volume, boots nothing from it, and the reachability check fails;
// that is what EC2 shows for such an image too. Health says arm64 guests run, and under what.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, describe, it } from "node:test";
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeInstanceStatusCommand,
  GetConsoleScreenshotCommand,
  RunInstancesCommand,
  waitUntilInstanceRunning,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { consoleShows, instanceFile, waiting } from "../helpers/guests.js";
import { startTestKiln, type TestKiln } from "../helpers/kiln.js";

let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  kiln = await startTestKiln({ instanceBackend: "qemu" }, { KILN_VM_MEMORY_MAX_MIB: "512", KILN_VM_BOOT_TIMEOUT_MS: "10000" });
  ec2 = kiln.ec2();
});
after(() => kiln?.close());

describe("arm64 instances", () => {
  it("boot AAVMF on qemu-system-aarch64, which reads the root volume", async () => {
    const health = await (await fetch(`${kiln.url}/_kiln/health`)).json();
    assert.deepEqual(health.instances.arm64, { accelerator: "tcg" });

    const { Images } = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"], Filters: [{ Name: "architecture", Values: ["arm64"] }] }));
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: Images![0]!.ImageId, InstanceType: "t4g.nano", MinCount: 1, MaxCount: 1 }));
    const id = Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [id] });
    const { Reservations } = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
    assert.equal(Reservations![0]!.Instances![0]!.StateTransitionReason, "", "a guest runs: no reason why not");

    const pid = readFileSync(instanceFile(kiln.dataDir, id, "qemu.pid"), "utf8").trim();
    const command = readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0");
    assert.match(command[0]!, /qemu-system-aarch64$/);
    const line = command.join(" ");
    assert.match(line, / -machine virt /);
    assert.match(line, /file=\/usr\/share\/AAVMF\/AAVMF_CODE\.fd/);

    // AAVMF starts, finds the root volume (a virtio disk) and boots nothing from it: it is empty.
    const console = await consoleShows(ec2, id, /BdsDxe: failed to load Boot\d+ "UEFI Misc Device"/, 240);
    assert.match(console, /UEFI firmware/);
    const { ImageData } = await ec2.send(new GetConsoleScreenshotCommand({ InstanceId: id }));
    assert.equal(Buffer.from(ImageData!, "base64").subarray(1, 4).toString("latin1"), "PNG", "the virtio GPU's screen");
    // KILN_VM_BOOT_TIMEOUT_MS is 10 s here: no operating system came up in it.
    await new Promise((resolve) => setTimeout(resolve, 11_000));
    const { InstanceStatuses } = await ec2.send(new DescribeInstanceStatusCommand({ InstanceIds: [id] }));
    assert.equal(InstanceStatuses![0]!.InstanceStatus!.Status, "impaired");
  });
});
