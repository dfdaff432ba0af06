// The AMI lifecycle with real bytes: known data written with the EBS direct APIs → RegisterImage
// → RunInstances → CreateImage (with and without NoReboot) → the new image's snapshot blocks
// read back equal. Also the instance lifecycle and volume attachment around it.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import {
  AttachVolumeCommand,
  CreateImageCommand,
  CreateVolumeCommand,
  DeleteVolumeCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  RebootInstancesCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  StartInstancesCommand,
  StopInstancesCommand,
  TerminateInstancesCommand,
  waitUntilImageAvailable,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
  type EC2Client,
  type Instance,
} from "@aws-sdk/client-ec2";
import { BLOCK, errorName, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

const DELAY = 300;
let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  // Real transition times, so the states an instance passes through can be seen.
  kiln = await startTestKiln({ stateDelayMs: DELAY });
  ec2 = kiln.ec2();
  await registerBaseImage();
});
after(() => kiln.close());

const waitFast = { minDelay: 1, maxDelay: 1, maxWaitTime: 30 };

async function instance(id: string): Promise<Instance> {
  const { Reservations } = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [id] }));
  return Reservations![0]!.Instances![0]!;
}

/** The distinct states an instance shows, polled every 50 ms, for `ms`. */
async function statesDuring(id: string, ms: number): Promise<string[]> {
  const seen: string[] = [];
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const state = (await instance(id)).State!.Name!;
    if (seen[seen.length - 1] !== state) seen.push(state);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return seen;
}

/** True when `seen` is `order` with some entries left out (in order, none repeated out of turn). */
const isSubsequence = (seen: readonly string[], order: readonly string[]) => {
  let at = 0;
  for (const state of seen) {
    while (at < order.length && order[at] !== state) at++;
    if (at === order.length) return false;
    at++;
  }
  return true;
};

/**
 * Polls an instance until it is running again after leaving running (20 s at most), and asserts
 * what it showed on the way: the states seen, in order, are some of `order` (polling may miss a
 * short one, never reorder them), at least one of them not running, ending running.
 */
async function assertReachesRunningThrough(id: string, order: readonly string[]): Promise<void> {
  const seen: string[] = [];
  const deadline = Date.now() + 20_000;
  for (;;) {
    const state = (await instance(id)).State!.Name!;
    if (seen[seen.length - 1] !== state) seen.push(state);
    if (state === "running" && seen.some((s) => s !== "running")) break;
    if (Date.now() > deadline) assert.fail(`${id} did not leave running and come back in 20 s: ${seen.join(" → ")}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(isSubsequence(seen, order), `${id} went ${seen.join(" → ")}, not in the order ${order.join(" → ")}`);
}

let imageId: string;
let rootData: Map<number, Buffer>;
let dataVolumeSnapshot: string;

/** The image every test launches: registered in the file's before hook, so no test depends on another's having run. */
async function registerBaseImage(): Promise<void> {
  rootData = new Map([
    [0, randomBytes(BLOCK)],
    [100, randomBytes(BLOCK)],
    [16383, randomBytes(BLOCK)],
  ]);
  const root = await writeSnapshot(kiln, rootData);
  dataVolumeSnapshot = await writeSnapshot(kiln, new Map([[5, randomBytes(BLOCK)]]), { size: 4 });
  ({ ImageId: imageId } = (await ec2.send(
    new RegisterImageCommand({
      Name: "lifecycle-base",
      Architecture: "x86_64",
      VirtualizationType: "hvm",
      EnaSupport: true,
      RootDeviceName: "/dev/xvda",
      BlockDeviceMappings: [
        { DeviceName: "/dev/xvda", Ebs: { SnapshotId: root, VolumeType: "gp3" } },
        { DeviceName: "/dev/sdf", Ebs: { SnapshotId: dataVolumeSnapshot, DeleteOnTermination: false } },
      ],
    }),
  )) as { ImageId: string });
  await waitUntilImageAvailable({ client: ec2, ...waitFast }, { ImageIds: [imageId] });
}

describe("the AMI lifecycle with real data", () => {
  it("CreateImage with NoReboot keeps the instance running and copies every byte", async () => {
    const { Instances } = await ec2.send(
      new RunInstancesCommand({
        ImageId: imageId,
        MinCount: 1,
        MaxCount: 1,
        InstanceType: "t3.micro",
        BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { VolumeSize: 12 } }],
        TagSpecifications: [
          { ResourceType: "instance", Tags: [{ Key: "Name", Value: "builder" }] },
          { ResourceType: "volume", Tags: [{ Key: "from", Value: "run" }] },
        ],
      }),
    );
    const launched = Instances![0]!;
    assert.equal(launched.State!.Name, "pending");
    assert.equal(launched.State!.Code, 0);
    await waitUntilInstanceRunning({ client: ec2, ...waitFast }, { InstanceIds: [launched.InstanceId!] });
    const running = await instance(launched.InstanceId!);
    assert.equal(running.State!.Code, 16);
    assert.deepEqual(running.Tags, [{ Key: "Name", Value: "builder" }]);
    assert.deepEqual(
      running.BlockDeviceMappings!.map((m) => m.DeviceName),
      ["/dev/sdf", "/dev/xvda"],
    );
    const rootVolume = running.BlockDeviceMappings!.find((m) => m.DeviceName === "/dev/xvda")!.Ebs!.VolumeId!;
    const volume = (await ec2.send(new DescribeVolumesCommand({ VolumeIds: [rootVolume] }))).Volumes![0]!;
    assert.equal(volume.State, "in-use");
    assert.equal(volume.Size, 12);
    assert.equal(volume.VolumeType, "gp3");
    assert.deepEqual(volume.Tags, [{ Key: "from", Value: "run" }]);

    const { ImageId } = await ec2.send(
      new CreateImageCommand({
        InstanceId: launched.InstanceId,
        Name: "from-instance-noreboot",
        NoReboot: true,
        TagSpecifications: [
          { ResourceType: "image", Tags: [{ Key: "kind", Value: "image" }] },
          { ResourceType: "snapshot", Tags: [{ Key: "kind", Value: "snapshot" }] },
        ],
      }),
    );
    assert.equal((await instance(launched.InstanceId!)).State!.Name, "running", "NoReboot: no stop");
    const pending = (await ec2.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
    assert.equal(pending.State, "pending");
    await waitUntilImageAvailable({ client: ec2, ...waitFast }, { ImageIds: [ImageId!] });
    assert.deepEqual(await statesDuring(launched.InstanceId!, 1000), ["running"], "never left running");

    const image = (await ec2.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
    assert.equal(image.SourceInstanceId, launched.InstanceId);
    assert.equal(image.Architecture, "x86_64");
    assert.equal(image.EnaSupport, true);
    assert.deepEqual(image.Tags, [{ Key: "kind", Value: "image" }]);
    const rootMapping = image.BlockDeviceMappings!.find((m) => m.DeviceName === "/dev/xvda")!;
    assert.equal(rootMapping.Ebs!.VolumeSize, 12);
    const snapshot = (await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [rootMapping.Ebs!.SnapshotId!] }))).Snapshots![0]!;
    assert.equal(snapshot.State, "completed");
    assert.equal(snapshot.VolumeId, rootVolume);
    assert.deepEqual(snapshot.Tags, [{ Key: "kind", Value: "snapshot" }]);
    assert.deepEqual(await readSnapshot(kiln, rootMapping.Ebs!.SnapshotId!), rootData);
  });

  it("CreateImage without NoReboot stops the instance, snapshots it and starts it again", async () => {
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }));
    const id = Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning({ client: ec2, ...waitFast }, { InstanceIds: [id] });
    const { ImageId } = await ec2.send(
      new CreateImageCommand({
        InstanceId: id,
        Name: "from-instance-reboot",
        BlockDeviceMappings: [{ DeviceName: "/dev/sdf", NoDevice: "" }],
      }),
    );
    await assertReachesRunningThrough(id, ["running", "stopping", "stopped", "pending", "running"]);
    await waitUntilImageAvailable({ client: ec2, ...waitFast }, { ImageIds: [ImageId!] });
    const image = (await ec2.send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
    assert.deepEqual(
      image.BlockDeviceMappings!.map((m) => m.DeviceName),
      ["/dev/xvda"],
      "NoDevice dropped /dev/sdf",
    );
    assert.deepEqual(await readSnapshot(kiln, image.BlockDeviceMappings![0]!.Ebs!.SnapshotId!), rootData);
  });

  it("refuses CreateImage for a taken name, a stopping instance, and bad tag types", async () => {
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }));
    const id = Instances![0]!.InstanceId!;
    await waitUntilInstanceRunning({ client: ec2, ...waitFast }, { InstanceIds: [id] });
    assert.equal(await errorName(ec2.send(new CreateImageCommand({ InstanceId: id, Name: "lifecycle-base" }))), "InvalidAMIName.Duplicate");
    assert.equal(await errorName(ec2.send(new CreateImageCommand({ InstanceId: id, Name: "x" }))), "InvalidAMIName.Malformed");
    assert.equal(
      await errorName(ec2.send(new CreateImageCommand({ InstanceId: id, Name: "bad-tags", TagSpecifications: [{ ResourceType: "volume", Tags: [] }] }))),
      "InvalidParameterValue",
    );
    assert.equal(await errorName(ec2.send(new CreateImageCommand({ InstanceId: id, Name: "dry", DryRun: true }))), "DryRunOperation");
    assert.equal(await errorName(ec2.send(new CreateImageCommand({ InstanceId: "i-0123456789abcdef0", Name: "nobody" }))), "InvalidInstanceID.NotFound");
    await ec2.send(new StopInstancesCommand({ InstanceIds: [id] }));
    assert.equal(await errorName(ec2.send(new CreateImageCommand({ InstanceId: id, Name: "while-stopping" }))), "IncorrectInstanceState");
    assert.equal((await ec2.send(new DescribeImagesCommand({ Filters: [{ Name: "name", Values: ["dry", "while-stopping", "bad-tags"] }] }))).Images!.length, 0);
  });
});

describe("the instance lifecycle", () => {
  it("launches MaxCount instances in one reservation and walks stop, start, reboot, terminate", async () => {
    const { ReservationId, Instances } = await ec2.send(
      new RunInstancesCommand({ ImageId: imageId, MinCount: 2, MaxCount: 3, InstanceType: "m5.large", Placement: { AvailabilityZone: "us-east-1c" } }),
    );
    assert.match(ReservationId!, /^r-[0-9a-f]{17}$/);
    assert.equal(Instances!.length, 3);
    assert.deepEqual(
      Instances!.map((i) => i.AmiLaunchIndex),
      [0, 1, 2],
    );
    assert.ok(Instances!.every((i) => i.Placement!.AvailabilityZone === "us-east-1c" && i.InstanceType === "m5.large"));
    const [first, second] = Instances!.map((i) => i.InstanceId!);
    await waitUntilInstanceRunning({ client: ec2, ...waitFast }, { InstanceIds: [first!, second!] });

    const stopped = await ec2.send(new StopInstancesCommand({ InstanceIds: [first!] }));
    assert.deepEqual(stopped.StoppingInstances, [
      { InstanceId: first, PreviousState: { Code: 16, Name: "running" }, CurrentState: { Code: 64, Name: "stopping" } },
    ]);
    await waitUntilInstanceStopped({ client: ec2, ...waitFast }, { InstanceIds: [first!] });
    assert.equal(await errorName(ec2.send(new RebootInstancesCommand({ InstanceIds: [first!] }))), "IncorrectInstanceState");
    const started = await ec2.send(new StartInstancesCommand({ InstanceIds: [first!] }));
    assert.deepEqual(started.StartingInstances![0]!.CurrentState, { Code: 0, Name: "pending" });
    await waitUntilInstanceRunning({ client: ec2, ...waitFast }, { InstanceIds: [first!] });
    await ec2.send(new RebootInstancesCommand({ InstanceIds: [first!] }));
    assert.equal((await instance(first!)).State!.Name, "running");

    // DeleteOnTermination: the root volume goes with the instance, /dev/sdf (false) stays.
    const volumes = (await instance(second!)).BlockDeviceMappings!;
    const rootVolume = volumes.find((m) => m.DeviceName === "/dev/xvda")!.Ebs!.VolumeId!;
    const keptVolume = volumes.find((m) => m.DeviceName === "/dev/sdf")!.Ebs!.VolumeId!;
    const terminated = await ec2.send(new TerminateInstancesCommand({ InstanceIds: [second!] }));
    assert.deepEqual(terminated.TerminatingInstances![0]!.CurrentState, { Code: 32, Name: "shutting-down" });
    assert.equal(await errorName(ec2.send(new DescribeVolumesCommand({ VolumeIds: [rootVolume] }))), "InvalidVolume.NotFound");
    assert.equal((await ec2.send(new DescribeVolumesCommand({ VolumeIds: [keptVolume] }))).Volumes![0]!.State, "available");
    await new Promise((resolve) => setTimeout(resolve, DELAY + 50));
    assert.equal((await instance(second!)).State!.Name, "terminated");
    assert.equal(await errorName(ec2.send(new StartInstancesCommand({ InstanceIds: [second!] }))), "IncorrectInstanceState");
    const filtered = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: "instance-state-name", Values: ["terminated"] }] }));
    assert.ok(filtered.Reservations!.flatMap((r) => r.Instances!).some((i) => i.InstanceId === second));
  });

  it("attaches and detaches volumes; an attached volume cannot be deleted", async () => {
    const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }));
    const id = Instances![0]!.InstanceId!;
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 2 }));
    await new Promise((resolve) => setTimeout(resolve, DELAY + 50));
    const attached = await ec2.send(new AttachVolumeCommand({ VolumeId: volume.VolumeId, InstanceId: id, Device: "/dev/sdh" }));
    assert.equal(attached.State, "attaching");
    assert.equal((await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volume.VolumeId!] }))).Volumes![0]!.State, "in-use");
    assert.equal(await errorName(ec2.send(new DeleteVolumeCommand({ VolumeId: volume.VolumeId }))), "VolumeInUse");
    assert.equal(await errorName(ec2.send(new AttachVolumeCommand({ VolumeId: volume.VolumeId, InstanceId: id, Device: "/dev/sdi" }))), "VolumeInUse");
    assert.ok((await instance(id)).BlockDeviceMappings!.some((m) => m.DeviceName === "/dev/sdh"));
    await ec2.send(new DetachVolumeCommand({ VolumeId: volume.VolumeId }));
    assert.equal((await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volume.VolumeId!] }))).Volumes![0]!.State, "available");
    await ec2.send(new DeleteVolumeCommand({ VolumeId: volume.VolumeId }));
  });

  it("refuses what AWS refuses", async () => {
    assert.equal(await errorName(ec2.send(new DescribeInstancesCommand({ InstanceIds: ["i-0123456789abcdef0"] }))), "InvalidInstanceID.NotFound");
    assert.equal(await errorName(ec2.send(new DescribeInstancesCommand({ InstanceIds: ["instance"] }))), "InvalidInstanceID.Malformed");
    assert.equal(await errorName(ec2.send(new RunInstancesCommand({ ImageId: "ami-0123456789abcdef0", MinCount: 1, MaxCount: 1 }))), "InvalidAMIID.NotFound");
    assert.equal(await errorName(ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 2, MaxCount: 1 }))), "InvalidParameterValue");
    assert.equal(
      await errorName(
        ec2.send(
          new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1, BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { VolumeSize: 2 } }] }),
        ),
      ),
      "InvalidBlockDeviceMapping",
    );
    assert.equal(await errorName(ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1, DryRun: true }))), "DryRunOperation");
    assert.equal(
      await errorName(ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1, Placement: { AvailabilityZone: "eu-west-1a" } }))),
      "InvalidParameterValue",
    );
    // An empty zone (as Terraform sends) means any zone.
    const anyZone = await ec2.send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1, Placement: { AvailabilityZone: "" } }));
    assert.equal(anyZone.Instances![0]!.Placement!.AvailabilityZone, "us-east-1a");
    assert.equal(
      await errorName(kiln.ec2({ accessKeyId: "111111111111" }).send(new RunInstancesCommand({ ImageId: imageId, MinCount: 1, MaxCount: 1 }))),
      "InvalidAMIID.NotFound",
    );
  });
});
