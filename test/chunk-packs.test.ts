// The chunk store's pack files: blocks land in fixed slots of pack files, named by SHA-256 and
// located by the metadata store, once each (zeros never); they are durable when put returns;
// collection forgets what nothing names, deletes empty packs and compacts sparse ones; and chunk
// files from an older data folder are moved into packs at start.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { adoptChunkFiles } from "../src/store/blocks/adopt-chunk-files.js";
import { BLOCK_SIZE, ZERO_CHUNK } from "../src/store/blocks/chunks.js";
import { packedChunkStore } from "../src/store/blocks/pack-home.js";
import { PackAppender } from "../src/store/blocks/packs.js";
import { openMetaStore, type MetaDb } from "../src/store/meta/database.js";
import { freshDatabase, testDatabaseUrl } from "./helpers/kiln.js";
import { scratch } from "./helpers/tools.js";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const blocks = (n: number) => Array.from({ length: n }, () => randomBytes(BLOCK_SIZE));
const silent = pino({ level: "silent" });

/** Packs in a folder, their locations in the pass's metadata store (PostgreSQL where CI gives it). */
async function fresh() {
  const dir = scratch();
  const database = testDatabaseUrl ? await freshDatabase() : undefined;
  const meta = await openMetaStore({ dataDir: join(dir, "meta"), databaseUrl: database?.url });
  if (database) after(() => database.drop());
  return { meta, db: meta.db, root: join(dir, "packs") };
}

/** Pack files under `root`, with their sizes in slots. */
function packs(root: string): Map<string, number> {
  const found = new Map<string, number>();
  for (const name of readdirSync(root)) found.set(name.replace(/\.pack$/, ""), statSync(join(root, name)).size / BLOCK_SIZE);
  return found;
}

async function locations(db: MetaDb) {
  return db.selectFrom("chunk_locations").select(["chunk", "pack", "slot"]).orderBy("pack").orderBy("slot").execute();
}

/** The bytes in slot `slot` of pack `pack`, read from the file itself. */
const slotBytes = (root: string, pack: string, slot: number) => readFileSync(join(root, `${pack}.pack`)).subarray(slot * BLOCK_SIZE, (slot + 1) * BLOCK_SIZE);

describe("chunk packs", () => {
  it("stores blocks in pack slots by SHA-256, once each, never zeros, and a new pack when one is full", async () => {
    const { meta, db, root } = await fresh();
    const store = packedChunkStore(root, db, { packSlots: 3 });
    const [a, b, c, d] = blocks(4);
    // Put at once: the second a waits for the first rather than taking a slot of its own.
    const ids = await Promise.all([a!, b!, a!, Buffer.alloc(BLOCK_SIZE)].map((block) => store.put(block)));
    assert.deepEqual(ids, [sha256(a!), sha256(b!), sha256(a!), ZERO_CHUNK]);
    await store.put(c!);
    await store.put(d!);
    assert.equal(await store.put(b!), sha256(b!), "a block stored before is not stored again");

    const rows = await locations(db);
    assert.equal(rows.length, 4);
    assert.deepEqual([...packs(root).values()].sort(), [1, 3], "a full pack of three slots and a new one");
    for (const [block, row] of [a!, b!, c!, d!].map((block) => [block, rows.find((r) => r.chunk === sha256(block))!] as const)) {
      assert.ok(slotBytes(root, row.pack, row.slot).equals(block), "the slot holds the block its location names");
      assert.ok((await store.get(row.chunk)).equals(block));
    }
    assert.ok((await store.get(ZERO_CHUNK)).equals(Buffer.alloc(BLOCK_SIZE)));
    await assert.rejects(store.get(sha256(randomBytes(16))), /is not stored/);
    await meta.close();
  });

  it("has every block durable when put returns: a store opened afresh reads them, and writes a new pack", async () => {
    const { meta, db, root } = await fresh();
    const data = blocks(40);
    const first = packedChunkStore(root, db);
    const ids = await Promise.all(data.map((block) => first.put(block)));
    const second = packedChunkStore(root, db);
    for (const [i, id] of ids.entries()) assert.ok((await second.get(id)).equals(data[i]!));
    await second.put(randomBytes(BLOCK_SIZE));
    assert.equal(packs(root).size, 2, "an earlier process's pack is never appended to");
    await meta.close();
  });

  it("writes through the page cache when O_DIRECT is refused", async () => {
    const { meta, db, root } = await fresh();
    const appender = new PackAppender(root, db);
    // 16 bytes into a buffer: no O_DIRECT write accepts that alignment.
    const block = Buffer.from(new ArrayBuffer(BLOCK_SIZE + 16), 16, BLOCK_SIZE);
    randomBytes(BLOCK_SIZE).copy(block);
    await appender.append(sha256(block), block);
    const [row] = await locations(db);
    assert.equal(row?.chunk, sha256(block));
    assert.ok(slotBytes(root, row.pack, row.slot).equals(block));
    await meta.close();
  });

  it("collects: forgets unnamed chunks past the grace period, deletes empty packs, compacts sparse ones, spares open ones", async () => {
    const { meta, db, root } = await fresh();
    const store = packedChunkStore(root, db, { packSlots: 4 });
    const [a, b, c, d, e] = blocks(5);
    for (const block of [a, b, c, d, e]) await store.put(block!);
    const [full, open] = [...packs(root).entries()].sort((x, y) => y[1] - x[1]).map(([pack]) => pack);
    // d is named by a snapshot, e by a volume; a, b and c by nothing.
    await db
      .insertInto("snapshot_blocks")
      .values({ snapshot_id: "snap-1", block_index: 0, chunk: sha256(d!), written: 1 })
      .execute();
    await db
      .insertInto("volume_blocks")
      .values({ volume_id: "vol-1", block_index: 0, chunk: sha256(e!) })
      .execute();

    // Read once before collection: the store remembers where c and d are, and keeps their pack open.
    for (const block of [c, d]) assert.ok((await store.get(sha256(block!))).equals(block!));

    const soon = await store.collect(60_000, Date.now() + 30_000);
    assert.deepEqual(soon, { kept: 5, removed: 0, packsRemoved: 0, packsCompacted: 0 }, "all five were put within the grace period");

    // Three hours on (every chunk and pack aged by three hours), and c put again just now.
    const aged = new Date(Date.now() - 3 * 3600_000);
    await db.updateTable("chunk_locations").set({ stored_at: aged.getTime() }).execute();
    for (const name of readdirSync(root)) utimesSync(join(root, name), aged, aged);
    await store.put(c!);
    const result = await store.collect(3600_000);
    assert.deepEqual(result, { kept: 3, removed: 2, packsRemoved: 1, packsCompacted: 1 });
    // a and b go; c (put again) and d (named) are half the full pack, so it is compacted.
    const after = packs(root);
    assert.ok(!after.has(full!), "the sparse pack is gone");
    assert.deepEqual([...after.keys()], [open], "the open pack is kept");
    const rows = await locations(db);
    assert.deepEqual(rows.map((r) => r.chunk).sort(), [c, d, e].map((x) => sha256(x!)).sort());
    // Read again where they were moved, and the deleted pack's space is given back: no file
    // of this process is open on it.
    for (const block of [c, d, e]) assert.ok((await store.get(sha256(block!))).equals(block!));
    assert.ok((await store.getRange(sha256(d!), 4096, 512)).equals(d!.subarray(4096, 4608)));
    const openOnDeleted = () =>
      readdirSync("/proc/self/fd").some((fd) => {
        try {
          return readlinkSync(join("/proc/self/fd", fd)).includes(`${full}.pack`);
        } catch {
          return false;
        }
      });
    for (let waited = 0; openOnDeleted() && waited < 2000; waited += 20) await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(!openOnDeleted(), "the compacted pack is not held open");
    await store.close();
    await meta.close();
  });

  it("deletes a pack a crashed writer left with no chunk named in it, once it is past the grace period", async () => {
    const { meta, db, root } = await fresh();
    const store = packedChunkStore(root, db);
    mkdirSync(root, { recursive: true });
    const left = join(root, "crashed.pack");
    const recent = join(root, "recent.pack");
    writeFileSync(left, randomBytes(2 * BLOCK_SIZE));
    writeFileSync(recent, randomBytes(BLOCK_SIZE));
    const old = new Date(Date.now() - 3600_000);
    utimesSync(left, old, old);
    assert.deepEqual(await store.collect(60_000), { kept: 0, removed: 0, packsRemoved: 1, packsCompacted: 0 });
    assert.deepEqual([...packs(root).keys()], ["recent"]);
    await meta.close();
  });

  it("moves chunk files from an older data folder into packs, leaving a file that does not match its name", async () => {
    const { meta, db, root } = await fresh();
    const store = packedChunkStore(root, db);
    const folder = join(scratch(), "chunks");
    const [good, other, bad] = blocks(3);
    const place = (name: string, data: Buffer) => {
      const dir = join(folder, name.slice(0, 2), name.slice(2, 4));
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, name), data);
      return join(dir, name);
    };
    const goodFile = place(sha256(good!), good!);
    place(sha256(other!), other!);
    const tmp = place(`${sha256(bad!)}.1a2b3c.tmp`, bad!.subarray(0, 1000));
    const badFile = place(sha256(bad!), good!);
    assert.equal(await adoptChunkFiles(folder, store, silent), 2);
    for (const block of [good, other]) assert.ok((await store.get(sha256(block!))).equals(block!));
    await assert.rejects(store.get(sha256(bad!)), /is not stored/);
    assert.throws(() => statSync(goodFile), "an adopted file is removed");
    assert.throws(() => statSync(tmp), "a leftover of an interrupted write is removed");
    assert.ok(statSync(badFile).isFile(), "a mismatched file stays for someone to look at");
    // Nothing is left to adopt: the folder goes.
    const { rmSync } = await import("node:fs");
    rmSync(badFile);
    assert.equal(await adoptChunkFiles(folder, store, silent), 0);
    assert.throws(() => statSync(folder));
    await meta.close();
  });
});
