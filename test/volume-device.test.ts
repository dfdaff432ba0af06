// A volume as a guest's disk (vm/volume-device.ts): random reads, writes, zeroings and trims of
// any size and alignment against a copy held by the test, through a volume resting on a
// snapshot, with folds of the journal among them; a flush makes them durable (a new device, as
// after a restart, reads the same bytes from the journal); the snapshot underneath never
// changes; a snapshot taken after a settle holds them. A device dropped without a word (its Kiln
// killed) loses only what was not flushed, and chunk collection keeps the journal's chunks.
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { BLOCK_SIZE } from "../src/store/blocks/chunks.js";
import { bucketChunkStore } from "../src/store/blocks/bucket-home.js";
import { packedChunkStore } from "../src/store/blocks/pack-home.js";
import { openMetaStore, type MetaDb } from "../src/store/meta/database.js";
import { insertSnapshotOfVolume, newSnapshotRow } from "../src/store/meta/snapshots.js";
import { insertVolume, newVolumeRow, writeVolumeBlocks } from "../src/store/meta/volumes.js";
import { openVolumeDevice, type VolumeDevice } from "../src/vm/volume-device.js";
import { freshBucket, freshDatabase, testDatabaseUrl, testObjectStoreEndpoint } from "./helpers/kiln.js";
import { scratch } from "./helpers/tools.js";

const MiB = 1024 * 1024;
const scope = { account_id: "000000000000", region: "us-east-1" };
const zone = { ...scope, availability_zone: "us-east-1a" };

type ChunkHomeKind = "packs" | "object store";
/** Packs always; the object store too where CI gives one. */
const homes: ChunkHomeKind[] = testObjectStoreEndpoint ? ["packs", "object store"] : ["packs"];

/** The pass's metadata store (PostgreSQL where CI gives it) and a chunk store in `home`. */
async function fresh(home: ChunkHomeKind) {
  const dir = scratch();
  const database = testDatabaseUrl ? await freshDatabase() : undefined;
  const meta = await openMetaStore({ dataDir: join(dir, "meta"), databaseUrl: database?.url });
  const bucket = home === "object store" ? await freshBucket() : undefined;
  const chunks = bucket ? bucketChunkStore(bucket.bucket, meta.db) : packedChunkStore(join(dir, "packs"), meta.db);
  after(async () => {
    await chunks.close();
    await meta.close();
    await database?.drop();
    await bucket?.drop();
  });
  return { db: meta.db, chunks };
}

const journalRows = async (deps: { db: MetaDb }, volumeId: string) =>
  (await deps.db.selectFrom("volume_journal").select("seq").where("volume_id", "=", volumeId).execute()).length;

/** Reads all of a device, a few MiB at a time. */
async function readAll(device: VolumeDevice): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < device.size; at += 3 * MiB) parts.push(await device.read(at, Math.min(3 * MiB, device.size - at)));
  return Buffer.concat(parts);
}

for (const home of homes)
  describe(`volume device, chunks in ${home}`, () => {
    it("reads and writes any range through a snapshot's layer, durable after a flush", async () => {
      const deps = await fresh(home);
      // 300 MiB: more than one window of chunk ids (128 MiB), mostly sparse.
      const size = 300 * MiB;
      const shadow = Buffer.alloc(size);
      // A base volume with data in a few blocks, one of them past the first window, then its snapshot.
      const baseBlocks = [0, 3, 7, 300, 599];
      const base = newVolumeRow({ ...zone, volume_id: "vol-0base0000000000", size: 1 });
      await insertVolume(deps.db, base);
      const rows = [];
      for (const index of baseBlocks) {
        const block = randomBytes(BLOCK_SIZE);
        block.copy(shadow, index * BLOCK_SIZE);
        rows.push({ block_index: index, chunk: await deps.chunks.put(block) });
      }
      await writeVolumeBlocks(deps.db, base.volume_id, rows);
      const snapshot = newSnapshotRow({ ...scope, snapshot_id: "snap-0base000000000", volume_id: base.volume_id, volume_size: 1 });
      await insertSnapshotOfVolume(deps.db, snapshot);
      const baseBytes = Buffer.from(shadow);

      const volume = newVolumeRow({ ...zone, volume_id: "vol-0guest000000000", size: 1, snapshot_id: snapshot.snapshot_id });
      await insertVolume(deps.db, volume);
      const device = openVolumeDevice(deps, volume.volume_id, size);
      assert.ok((await readAll(device)).equals(shadow), "a new volume reads as its snapshot");

      // Random operations, several at once as a guest sends them, none overlapping another in flight.
      for (let round = 0; round < 40; round++) {
        const batch: Promise<void>[] = [];
        const taken: [number, number][] = [];
        for (let op = 0; op < 8; op++) {
          const near = baseBlocks[randomInt(baseBlocks.length)]! * BLOCK_SIZE;
          const offset = Math.min(size - 1, Math.max(0, near + randomInt(-2 * MiB, 2 * MiB)));
          const length = Math.min(size - offset, [512, 4096, 65536, BLOCK_SIZE, 3 * BLOCK_SIZE + 4096][randomInt(5)]!);
          if (taken.some(([a, b]) => offset < b && a < offset + length)) continue;
          taken.push([offset, offset + length]);
          const kind = randomInt(10);
          if (kind < 6) {
            const data = randomBytes(length);
            data.copy(shadow, offset);
            batch.push(device.write(offset, data, kind === 0));
          } else if (kind < 8) {
            shadow.fill(0, offset, offset + length);
            batch.push(device.writeZeroes(offset, length, kind === 6));
          } else {
            // A trim lets whole blocks go (they read as zeros); a partial block keeps its bytes.
            const first = Math.ceil(offset / BLOCK_SIZE) * BLOCK_SIZE;
            const last = Math.floor((offset + length) / BLOCK_SIZE) * BLOCK_SIZE;
            if (last > first) shadow.fill(0, first, last);
            batch.push(device.trim(offset, length));
          }
        }
        // A fold among the writes, as a snapshot of a running guest makes one.
        if (round % 10 === 4) batch.push(device.settle());
        await Promise.all(batch);
        if (round % 10 === 9) await device.flush();
        const probe = randomInt(size - MiB);
        assert.ok((await device.read(probe, MiB)).equals(shadow.subarray(probe, probe + MiB)), `round ${round} reads back what was written`);
      }
      await device.flush();
      assert.ok((await readAll(device)).equals(shadow), "the device reads back every change");

      const again = openVolumeDevice(deps, volume.volume_id, size);
      assert.ok((await readAll(again)).equals(shadow), "a new device on the volume (as after a restart) reads what was flushed");
      again.abandon();
      const under = openVolumeDevice(deps, base.volume_id, size);
      assert.ok((await readAll(under)).equals(baseBytes), "the snapshot's volume is unchanged");

      await device.settle();
      assert.equal(await journalRows(deps, volume.volume_id), 0, "a settle folds the whole journal");
      const later = newSnapshotRow({ ...scope, snapshot_id: "snap-0later00000000", volume_id: volume.volume_id, volume_size: 1 });
      await insertSnapshotOfVolume(deps.db, later);
      const fromLater = newVolumeRow({ ...zone, volume_id: "vol-0later000000000", size: 1, snapshot_id: later.snapshot_id });
      await insertVolume(deps.db, fromLater);
      assert.ok((await readAll(openVolumeDevice(deps, fromLater.volume_id, size))).equals(shadow), "a snapshot after the settle holds every change");
      await device.close();
    });

    it("journals writes until a flush, folds them on a settle, and refuses a range past its end", async () => {
      const deps = await fresh(home);
      const volume = newVolumeRow({ ...zone, volume_id: "vol-0held0000000000", size: 1 });
      await insertVolume(deps.db, volume);
      const device = openVolumeDevice(deps, volume.volume_id, 8 * MiB);
      const data = randomBytes(4096);
      await device.write(MiB, data);
      const blockRows = async () =>
        (await deps.db.selectFrom("volume_blocks").select("block_index").where("volume_id", "=", volume.volume_id).execute()).length;
      assert.equal(await journalRows(deps, volume.volume_id), 0, "a write without FUA is held");
      assert.ok((await device.read(MiB, 4096)).equals(data), "and read back from where it is held");
      await device.flush();
      assert.equal(await journalRows(deps, volume.volume_id), 1, "a flush commits its journal segment");
      assert.equal(await blockRows(), 0, "and writes no block");
      await device.write(2 * MiB, data, true);
      assert.equal(await journalRows(deps, volume.volume_id), 2, "a FUA write is committed before it answers");
      await device.settle();
      assert.equal(await journalRows(deps, volume.volume_id), 0);
      assert.equal(await blockRows(), 2, "a settle folds the journal into the two blocks written");
      await assert.rejects(device.read(8 * MiB - 512, 1024), RangeError);
      await assert.rejects(device.write(8 * MiB, Buffer.alloc(1)), RangeError);
      // A trim of blocks that read as zeros already writes no row.
      await device.trim(4 * MiB, 2 * MiB);
      await device.settle();
      assert.equal(await blockRows(), 2, "trimming zeros costs nothing");
      await device.close();
    });

    it("keeps what was flushed when its Kiln dies, through a chunk collection", async () => {
      const deps = await fresh(home);
      const volume = newVolumeRow({ ...zone, volume_id: "vol-0died0000000000", size: 1 });
      await insertVolume(deps.db, volume);
      const size = 16 * MiB;
      const device = openVolumeDevice(deps, volume.volume_id, size);
      const flushed = Buffer.alloc(size);
      // Whole blocks and small writes, more than one segment's worth, then a flush.
      for (let n = 0; n < 300; n++) {
        const length = n % 50 === 0 ? BLOCK_SIZE : 4096 * (1 + randomInt(4));
        const offset = n % 50 === 0 ? randomInt(size / BLOCK_SIZE) * BLOCK_SIZE : randomInt((size - length) / 512) * 512;
        const data = randomBytes(length);
        data.copy(flushed, offset);
        await device.write(offset, data);
      }
      await device.flush();
      const lost = randomBytes(8192);
      await device.write(0, lost);
      device.abandon();
      assert.ok((await journalRows(deps, volume.volume_id)) > 1, "the flushed writes fill more than one segment");

      // Collection with no grace: every chunk no manifest or journal names goes.
      await deps.chunks.collect(0);
      const after = openVolumeDevice(deps, volume.volume_id, size);
      assert.ok((await readAll(after)).equals(flushed), "a new device reads what was flushed, and not what was not");
      await after.close();
      assert.equal(await journalRows(deps, volume.volume_id), 0, "a close folds the journal it took over");
      assert.ok((await readAll(openVolumeDevice(deps, volume.volume_id, size))).equals(flushed), "the volume's blocks hold it");
    });
  });
