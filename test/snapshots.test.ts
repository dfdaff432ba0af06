// EC2's view of snapshots: DescribeSnapshots (ids, owners, filters, pagination, the
// snapshot_completed waiter) and DeleteSnapshot, for snapshots written with the EBS direct APIs.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import { CompleteSnapshotCommand, PutSnapshotBlockCommand, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import {
  DeleteSnapshotCommand,
  DescribeSnapshotsCommand,
  paginateDescribeSnapshots,
  waitUntilSnapshotCompleted,
  type DescribeSnapshotsCommandInput,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { errorName } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
let ec2: EC2Client;
before(async () => {
  kiln = await startTestKiln();
  ec2 = kiln.ec2();
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

async function snapshot(options: { size?: number; description?: string; tags?: Record<string, string>; complete?: boolean } = {}) {
  const ebs = kiln.ebs();
  const started = await ebs.send(
    new StartSnapshotCommand({
      VolumeSize: options.size ?? 8,
      Description: options.description,
      Tags: Object.entries(options.tags ?? {}).map(([Key, Value]) => ({ Key, Value })),
    }),
  );
  if (options.complete !== false) {
    const data = randomBytes(512 * 1024);
    await ebs.send(
      new PutSnapshotBlockCommand({
        SnapshotId: started.SnapshotId,
        BlockIndex: 0,
        BlockData: data,
        DataLength: data.length,
        Checksum: createHash("sha256").update(data).digest("base64"),
        ChecksumAlgorithm: "SHA256",
      }),
    );
    await ebs.send(new CompleteSnapshotCommand({ SnapshotId: started.SnapshotId, ChangedBlocksCount: 1 }));
  }
  return started.SnapshotId!;
}

describe("DescribeSnapshots", () => {
  it("shows a snapshot as EC2 does, pending then completed, and the waiter sees it complete", async () => {
    const ebs = kiln.ebs();
    const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 8, Description: "from EBS direct", Tags: [{ Key: "Name", Value: "root" }] }));
    const pending = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [SnapshotId!] }));
    const shown = pending.Snapshots![0]!;
    assert.equal(shown.State, "pending");
    assert.equal(shown.Progress, "0%");
    assert.equal(shown.VolumeId, "vol-ffffffff");
    assert.equal(shown.VolumeSize, 8);
    assert.equal(shown.OwnerId, "000000000000");
    assert.equal(shown.Description, "from EBS direct");
    assert.equal(shown.Encrypted, false);
    assert.equal(shown.StorageTier, "standard");
    assert.deepEqual(shown.Tags, [{ Key: "Name", Value: "root" }]);

    const waiting = waitUntilSnapshotCompleted({ client: ec2, maxWaitTime: 20, minDelay: 1, maxDelay: 1 }, { SnapshotIds: [SnapshotId!] });
    await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 0 }));
    assert.equal((await waiting).state, "SUCCESS");
    const done = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [SnapshotId!] }));
    assert.equal(done.Snapshots![0]!.State, "completed");
    assert.equal(done.Snapshots![0]!.Progress, "100%");
  });

  it("filters by status, size, description and tags, and by owner", async () => {
    const a = await snapshot({ size: 8, description: "web root", tags: { team: "web" } });
    const b = await snapshot({ size: 16, description: "db data", tags: { team: "db" } });
    const c = await snapshot({ size: 8, complete: false });
    const ids = async (input: DescribeSnapshotsCommandInput) =>
      ((await ec2.send(new DescribeSnapshotsCommand(input))).Snapshots ?? []).map((s) => s.SnapshotId).sort();
    assert.deepEqual(await ids({ Filters: [{ Name: "status", Values: ["pending"] }] }), [c]);
    assert.deepEqual(await ids({ Filters: [{ Name: "volume-size", Values: ["8"] }] }), [a, c].sort());
    assert.deepEqual(await ids({ Filters: [{ Name: "description", Values: ["*root"] }] }), [a]);
    assert.deepEqual(await ids({ Filters: [{ Name: "tag:team", Values: ["db"] }] }), [b]);
    assert.deepEqual(await ids({ Filters: [{ Name: "tag-key", Values: ["team"] }] }), [a, b].sort());
    assert.deepEqual(await ids({ OwnerIds: ["self"] }), [a, b, c].sort());
    assert.deepEqual(await ids({ OwnerIds: ["000000000000"] }), [a, b, c].sort());
    assert.deepEqual(await ids({ OwnerIds: ["amazon"] }), []);
    // Another account sees none of them.
    assert.deepEqual(((await kiln.ec2({ accessKeyId: "111111111111" }).send(new DescribeSnapshotsCommand({}))).Snapshots ?? []).length, 0);
  });

  it("paginates", async () => {
    const made: string[] = [];
    for (let i = 0; i < 12; i++) made.push(await snapshot({ complete: false }));
    const seen: string[] = [];
    for await (const page of paginateDescribeSnapshots({ client: ec2, pageSize: 5 }, {})) {
      assert.ok(page.Snapshots!.length <= 5);
      seen.push(...page.Snapshots!.map((s) => s.SnapshotId!));
    }
    assert.deepEqual(seen, [...made].sort());
  });

  it("refuses unknown and malformed ids, and ids with MaxResults", async () => {
    assert.equal(await errorName(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ["snap-0123456789abcdef0"] }))), "InvalidSnapshot.NotFound");
    assert.equal(await errorName(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: ["snapshot-1"] }))), "InvalidSnapshotID.Malformed");
    const id = await snapshot();
    assert.equal(await errorName(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id], MaxResults: 5 }))), "InvalidParameterCombination");
  });
});

describe("DeleteSnapshot", () => {
  it("deletes a snapshot with its tags; a second delete is NotFound", async () => {
    const id = await snapshot({ tags: { gone: "soon" } });
    assert.equal(await errorName(ec2.send(new DeleteSnapshotCommand({ SnapshotId: id, DryRun: true }))), "DryRunOperation");
    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }));
    assert.equal(await errorName(ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [id] }))), "InvalidSnapshot.NotFound");
    assert.equal(await errorName(ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }))), "InvalidSnapshot.NotFound");
    // Another account cannot delete what it cannot see.
    const kept = await snapshot();
    assert.equal(await errorName(kiln.ec2({ accessKeyId: "111111111111" }).send(new DeleteSnapshotCommand({ SnapshotId: kept }))), "InvalidSnapshot.NotFound");
  });
});
