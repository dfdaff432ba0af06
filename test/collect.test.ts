// Chunk collection: unreferenced chunks go, chunks any snapshot or volume still names stay, and
// the grace period protects chunks written recently (so collection never races a writer).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { statSync, utimesSync } from "node:fs";
import { join } from "node:path";
import { after, before, beforeEach, describe, it } from "node:test";
import { CreateVolumeCommand, DeleteSnapshotCommand, DeleteVolumeCommand } from "@aws-sdk/client-ec2";
import { BLOCK, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

async function collect(graceMs?: number): Promise<{ kept: number; removed: number }> {
  const response = await fetch(`${kiln.url}/_kiln/collect${graceMs === undefined ? "" : `?graceMs=${graceMs}`}`, { method: "POST" });
  assert.equal(response.status, 200);
  return (await response.json()) as { kept: number; removed: number };
}

/** Where the chunk store keeps a block: named by its SHA-256. */
const chunkPath = (data: Buffer) => {
  const hash = createHash("sha256").update(data).digest("hex");
  return join(kiln.dataDir, "chunks", hash.slice(0, 2), hash.slice(2, 4), hash);
};

describe("chunk collection", () => {
  it("removes only chunks no snapshot or volume names", async () => {
    const [a, b, c] = [randomBytes(BLOCK), randomBytes(BLOCK), randomBytes(BLOCK)];
    const first = await writeSnapshot(kiln, new Map([[0, a], [1, b]]));
    const second = await writeSnapshot(kiln, new Map([[0, b], [1, c]]));
    const third = await writeSnapshot(kiln, new Map([[7, c]]));
    const ec2 = kiln.ec2();
    // A volume from the third snapshot keeps c alive after the snapshots go.
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: third }));
    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: first }));
    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: third }));

    const result = await collect(0);
    assert.equal(result.removed, 1, "only a is unreferenced");
    assert.throws(() => statSync(chunkPath(a)));
    assert.ok(statSync(chunkPath(b)).isFile());
    assert.ok(statSync(chunkPath(c)).isFile());
    assert.deepEqual(await readSnapshot(kiln, second), new Map([[0, b], [1, c]]));

    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: second }));
    assert.equal((await collect(0)).removed, 1, "b goes with the last snapshot naming it");
    assert.ok(statSync(chunkPath(c)).isFile(), "the volume still names c");
    await ec2.send(new DeleteVolumeCommand({ VolumeId: volume.VolumeId }));
    assert.equal((await collect(0)).removed, 1);
    assert.throws(() => statSync(chunkPath(c)));
  });

  it("spares unreferenced chunks younger than the grace period, and refreshes a chunk put again", async () => {
    const data = randomBytes(BLOCK);
    const snapshot = await writeSnapshot(kiln, new Map([[0, data]]));
    await kiln.ec2().send(new DeleteSnapshotCommand({ SnapshotId: snapshot }));
    assert.equal((await collect()).removed, 0, "the default grace period (10 minutes) spares it");
    // An old chunk that is put again is fresh again, so it survives until its new manifest lands.
    const old = new Date(Date.now() - 3600_000);
    utimesSync(chunkPath(data), old, old);
    await writeSnapshot(kiln, new Map([[3, data]]));
    assert.ok(Date.now() - statSync(chunkPath(data)).mtimeMs < 60_000);
    assert.equal((await collect(60_000)).removed, 0);
  });
});
