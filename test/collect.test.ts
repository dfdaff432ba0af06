// Chunk collection through a running Kiln: unnamed chunks go, chunks any snapshot or volume still
// names stay, the grace period protects chunks written recently (so collection never races a
// writer), and a closed pack's space comes back. These are the data folder's packs, whatever
// store the suite runs on (test/chunk-packs.test.js covers the pack store; test/object-store.test.js
// collection in an object store).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CopyImageCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DeleteVolumeCommand,
  DescribeImagesCommand,
  waitUntilImageAvailable,
} from "@aws-sdk/client-ec2";
import { BLOCK, readSnapshot, storedBlocks, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

const inFolder = { KILN_OBJECT_STORE_BUCKET: "" };
let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln({}, inFolder);
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

interface Collected {
  kept: number;
  removed: number;
  packsRemoved: number;
  packsCompacted: number;
}

async function collect(graceMs?: number): Promise<Collected> {
  const response = await kiln.admin("/_kiln/collect", { query: graceMs === undefined ? {} : { graceMs: String(graceMs) } });
  assert.equal(response.status, 200, response.text);
  return JSON.parse(response.text) as Collected;
}

describe("chunk collection", () => {
  it("forgets only chunks no snapshot or volume names, and gives their space back once their pack is closed", async () => {
    const atStart = (await collect(0)).kept;
    const [a, b, c] = [randomBytes(BLOCK), randomBytes(BLOCK), randomBytes(BLOCK)];
    const first = await writeSnapshot(
      kiln,
      new Map([
        [0, a],
        [1, b],
      ]),
    );
    const second = await writeSnapshot(
      kiln,
      new Map([
        [0, b],
        [1, c],
      ]),
    );
    const third = await writeSnapshot(kiln, new Map([[7, c]]));
    const ec2 = kiln.ec2();
    // A volume from the third snapshot keeps c alive after the snapshots go.
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: third }));
    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: first }));
    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: third }));

    const result = await collect(0);
    assert.equal(result.removed, 1, "only a is unnamed");
    assert.equal(result.kept, atStart + 2);
    assert.deepEqual(
      await readSnapshot(kiln, second),
      new Map([
        [0, b],
        [1, c],
      ]),
    );

    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: second }));
    assert.equal((await collect(0)).removed, 1, "b goes with the last snapshot naming it");
    const { VolumeId } = volume;
    assert.equal((await collect(0)).kept, atStart + 1, "the volume still names c");
    await ec2.send(new DeleteVolumeCommand({ VolumeId }));
    assert.deepEqual(await collect(0), { kept: atStart, removed: 1, packsRemoved: 0, packsCompacted: 0 }, "the open pack is left alone");
    assert.equal(await storedBlocks(kiln), atStart + 3, "a, b and c still take their slots in the open pack");

    // More dead slots than the catalogue's live ones, so the pack is worth compacting.
    const scrap = await writeSnapshot(kiln, new Map(Array.from({ length: atStart }, (_, i) => [i, randomBytes(BLOCK)])));
    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: scrap }));
    assert.equal((await collect(0)).removed, atStart);

    // A restart closes that pack; collection then moves the catalogue's blocks out of it and deletes it.
    await kiln.close();
    kiln = await startTestKiln({ dataDir: kiln.dataDir }, inFolder);
    assert.deepEqual(await collect(0), { kept: atStart, removed: 0, packsRemoved: 1, packsCompacted: 1 });
    assert.equal(await storedBlocks(kiln), atStart, "only the catalogue's blocks take space");
    const image = (await kiln.ec2().send(new DescribeImagesCommand({ Owners: ["amazon"], MaxResults: 5 }))).Images![0]!;
    // Its snapshot is Amazon's: read it through a copy of the image.
    const { ImageId } = await kiln.ec2().send(new CopyImageCommand({ Name: "after-compaction", SourceImageId: image.ImageId, SourceRegion: "us-east-1" }));
    await waitUntilImageAvailable({ client: kiln.ec2(), minDelay: 1, maxWaitTime: 10 }, { ImageIds: [ImageId!] });
    const copy = (await kiln.ec2().send(new DescribeImagesCommand({ ImageIds: [ImageId!] }))).Images![0]!;
    const [root] = [...(await readSnapshot(kiln, copy.BlockDeviceMappings![0]!.Ebs!.SnapshotId!)).values()];
    assert.equal(root?.subarray(510, 512).toString("hex"), "55aa", "a catalogue block reads from the pack it moved to");
  });

  it("spares unnamed chunks younger than the grace period", async () => {
    const snapshot = await writeSnapshot(kiln, new Map([[0, randomBytes(BLOCK)]]));
    await kiln.ec2().send(new DeleteSnapshotCommand({ SnapshotId: snapshot }));
    assert.equal((await collect()).removed, 0, "the default grace period (10 minutes) spares it");
    assert.equal((await collect(0)).removed, 1);
  });
});
