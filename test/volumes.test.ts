// Volumes and snapshots of volumes: data flows snapshot → volume → snapshot through shared
// chunks, states settle after the configured delay, and the SDK waiters see them do so.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DeleteVolumeCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  paginateDescribeVolumes,
  waitUntilSnapshotCompleted,
  waitUntilVolumeAvailable,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { BLOCK, chunkBytes, errorName, keptBytes, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

/** Bytes of the SQLite metadata files in the data folder (database, write-ahead log, shared memory, journal). */
const metadataBytes = (on: TestKiln) => {
  let total = 0;
  for (const name of readdirSync(on.dataDir)) if (/^kiln\.sqlite3(-wal|-shm|-journal)?$/.test(name)) total += statSync(join(on.dataDir, name)).size;
  return total;
};

/** Polls `state` until it is `target` (20 s at most); the distinct states seen, in order, and when `target` was first seen. */
async function reaches(state: () => Promise<string | undefined>, target: string): Promise<{ seen: (string | undefined)[]; at: number }> {
  const seen: (string | undefined)[] = [];
  const deadline = Date.now() + 20_000;
  for (;;) {
    const now = await state();
    if (seen[seen.length - 1] !== now) seen.push(now);
    if (now === target) return { seen, at: Date.now() };
    if (Date.now() > deadline) assert.fail(`never reached ${target}: ${seen.join(" → ")}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("volumes", () => {
  it("carries a snapshot's bytes into a volume and a new snapshot of it, storing no new chunk", async () => {
    const blocks = new Map([
      [0, randomBytes(BLOCK)],
      [3, randomBytes(BLOCK)],
      [2047, randomBytes(BLOCK)],
    ]);
    const source = await writeSnapshot(kiln, blocks);
    const chunksBefore = await chunkBytes(kiln);

    const volume = await ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: "us-east-1a",
        SnapshotId: source,
        VolumeType: "gp3",
        TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "Name", Value: "data" }] }],
      }),
    );
    assert.equal(volume.State, "creating");
    assert.equal(volume.Size, 8);
    assert.equal(volume.SnapshotId, source);
    assert.equal(volume.Iops, 3000);
    assert.equal(volume.Throughput, 125);
    assert.deepEqual(volume.Tags, [{ Key: "Name", Value: "data" }]);
    const described = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volume.VolumeId!] }));
    assert.equal(described.Volumes![0]!.State, "available");

    const snap = await ec2.send(
      new CreateSnapshotCommand({
        VolumeId: volume.VolumeId,
        Description: "of the volume",
        TagSpecifications: [{ ResourceType: "snapshot", Tags: [{ Key: "k", Value: "v" }] }],
      }),
    );
    assert.equal(snap.State, "pending");
    assert.equal(snap.VolumeId, volume.VolumeId);
    await waitUntilSnapshotCompleted({ client: ec2, maxWaitTime: 10, minDelay: 1 }, { SnapshotIds: [snap.SnapshotId!] });
    assert.deepEqual(await readSnapshot(kiln, snap.SnapshotId!), blocks);
    assert.equal(await chunkBytes(kiln), chunksBefore, "the new snapshot shares every chunk");
  });

  it("makes a 1 TiB empty volume for nothing", async () => {
    const before = { data: await chunkBytes(kiln), all: (await keptBytes(kiln)) - metadataBytes(kiln) };
    const volumes = [];
    for (let i = 0; i < 3; i++) volumes.push(await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1b", Size: 1024 })));
    assert.equal(await chunkBytes(kiln), before.data, "no snapshot data for an empty volume");
    // Nothing but their metadata rows: every byte Kiln keeps outside its metadata database (and
    // SQLite's write-ahead log, whose size is SQLite's business) is as it was.
    assert.equal((await keptBytes(kiln)) - metadataBytes(kiln), before.all, "three 1 TiB volumes added data");
    const { Volumes } = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: "size", Values: ["1024"] }] }));
    assert.equal(Volumes!.length, 3);
    assert.equal(Volumes![0]!.VolumeType, "gp2");
    assert.equal(Volumes![0]!.Iops, 3072);
  });

  it("filters, paginates and deletes", async () => {
    const made: string[] = [];
    for (let i = 0; i < 7; i++)
      made.push((await ec2.send(new CreateVolumeCommand({ AvailabilityZone: i % 2 ? "us-east-1a" : "us-east-1c", Size: 10 + i }))).VolumeId!);
    const zoneA = await ec2.send(
      new DescribeVolumesCommand({
        Filters: [
          { Name: "availability-zone", Values: ["us-east-1a"] },
          { Name: "status", Values: ["available"] },
        ],
      }),
    );
    assert.equal(zoneA.Volumes!.length, 3);
    const seen: string[] = [];
    for await (const page of paginateDescribeVolumes({ client: ec2, pageSize: 5 }, {})) seen.push(...page.Volumes!.map((v) => v.VolumeId!));
    assert.deepEqual(seen, [...made].sort());
    assert.equal(await errorName(ec2.send(new DeleteVolumeCommand({ VolumeId: made[0], DryRun: true }))), "DryRunOperation");
    await ec2.send(new DeleteVolumeCommand({ VolumeId: made[0] }));
    assert.equal(await errorName(ec2.send(new DescribeVolumesCommand({ VolumeIds: [made[0]!] }))), "InvalidVolume.NotFound");
    assert.equal(await errorName(ec2.send(new DeleteVolumeCommand({ VolumeId: made[0] }))), "InvalidVolume.NotFound");
    assert.equal(await errorName(kiln.ec2({ accessKeyId: "111111111111" }).send(new DeleteVolumeCommand({ VolumeId: made[1] }))), "InvalidVolume.NotFound");
  });

  it("refuses what AWS refuses", async () => {
    const source = await writeSnapshot(kiln, new Map([[0, randomBytes(BLOCK)]]), { size: 16 });
    assert.equal(await errorName(ec2.send(new CreateVolumeCommand({ Size: 8 } as never))), "MissingParameter");
    assert.equal(await errorName(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a" }))), "MissingParameter");
    assert.equal(await errorName(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "eu-west-1a", Size: 8 }))), "InvalidParameterValue");
    assert.equal(await errorName(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: source, Size: 8 }))), "InvalidParameterValue");
    assert.equal(await errorName(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 8, VolumeType: "io1" }))), "MissingParameter");
    assert.equal(await errorName(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 20000 }))), "InvalidParameterValue");
    assert.equal(
      await errorName(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: "snap-0123456789abcdef0" }))),
      "InvalidSnapshot.NotFound",
    );
    assert.equal(
      await errorName(
        ec2.send(
          new CreateVolumeCommand({
            AvailabilityZone: "us-east-1a",
            Size: 8,
            TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "a", Value: "b" }] }],
          }),
        ),
      ),
      "InvalidParameterValue",
    );
    assert.equal(await errorName(ec2.send(new DescribeVolumesCommand({ VolumeIds: ["volume-1"] }))), "InvalidVolumeID.Malformed");
    assert.equal(await errorName(ec2.send(new CreateSnapshotCommand({ VolumeId: "vol-0123456789abcdef0" }))), "InvalidVolume.NotFound");
    // DryRun changes nothing.
    assert.equal(await errorName(ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 8, DryRun: true }))), "DryRunOperation");
    assert.deepEqual((await ec2.send(new DescribeVolumesCommand({}))).Volumes, []);
  });

  it("makes a ClientToken'd CreateVolume idempotent", async () => {
    const first = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 8, ClientToken: "t-1" }));
    const again = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 8, ClientToken: "t-1" }));
    assert.equal(again.VolumeId, first.VolumeId);
    assert.equal((await ec2.send(new DescribeVolumesCommand({}))).Volumes!.length, 1);
  });
});

describe("state delays", () => {
  it("keeps volumes creating and snapshots pending for the configured time; the waiters wait", async () => {
    const DELAY = 1500;
    const slow = await startTestKiln({ stateDelayMs: DELAY });
    try {
      const client = slow.ec2();
      // Kiln starts a resource's delay when it handles the request, after `sent`: however slow
      // the machine, the new state cannot be seen before sent + the delay, and must be seen within the waiters' 20 s.
      let sent = Date.now();
      const volume = await client.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: 4 }));
      assert.equal(volume.State, "creating");
      const volumeWaiter = waitUntilVolumeAvailable({ client, maxWaitTime: 20, minDelay: 1, maxDelay: 1 }, { VolumeIds: [volume.VolumeId!] }).then(
        (result) => ({ result, at: Date.now() }),
      );
      const available = await reaches(
        async () => (await client.send(new DescribeVolumesCommand({ VolumeIds: [volume.VolumeId!] }))).Volumes![0]!.State,
        "available",
      );
      assert.ok(["creating,available", "available"].includes(available.seen.join()), `the volume went ${available.seen.join(" → ")}`);
      assert.ok(available.at - sent >= DELAY, `the volume was available ${available.at - sent} ms after it was asked for`);
      const waited = await volumeWaiter;
      assert.equal(waited.result.state, "SUCCESS");
      assert.ok(waited.at - sent >= DELAY, `the volume waiter returned ${waited.at - sent} ms after the request`);

      sent = Date.now();
      const snap = await client.send(new CreateSnapshotCommand({ VolumeId: volume.VolumeId }));
      assert.equal(snap.State, "pending");
      const snapshotWaiter = waitUntilSnapshotCompleted({ client, maxWaitTime: 20, minDelay: 1, maxDelay: 1 }, { SnapshotIds: [snap.SnapshotId!] }).then(
        (result) => ({ result, at: Date.now() }),
      );
      const completed = await reaches(
        async () => (await client.send(new DescribeSnapshotsCommand({ SnapshotIds: [snap.SnapshotId!] }))).Snapshots![0]!.State,
        "completed",
      );
      assert.ok(["pending,completed", "completed"].includes(completed.seen.join()), `the snapshot went ${completed.seen.join(" → ")}`);
      assert.ok(completed.at - sent >= DELAY, `the snapshot completed ${completed.at - sent} ms after it was asked for`);
      const snapshotWaited = await snapshotWaiter;
      assert.equal(snapshotWaited.result.state, "SUCCESS");
      assert.ok(snapshotWaited.at - sent >= DELAY, `the snapshot waiter returned ${snapshotWaited.at - sent} ms after the request`);
      const done = await client.send(new DescribeSnapshotsCommand({ SnapshotIds: [snap.SnapshotId!] }));
      assert.equal(done.Snapshots![0]!.Progress, "100%");
    } finally {
      await slow.close();
    }
  });
});
