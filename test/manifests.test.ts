// Layered manifests: volumes, copies, child snapshots and snapshots of volumes rest on the
// snapshot they came from instead of copying its manifest. What is shown here: every byte
// survives the deletion of the snapshots beneath, a zero block written over data hides it, long
// chains read back whole at a bounded depth, and CreateImage adds a handful of rows, not one
// row per block.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import { sql, type RawBuilder } from "kysely";
import {
  CopySnapshotCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DeleteVolumeCommand,
  waitUntilSnapshotCompleted,
} from "@aws-sdk/client-ec2";
import { CompleteSnapshotCommand, ListChangedBlocksCommand, ListSnapshotBlocksCommand, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import { BLOCK, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

let kiln: TestKiln;
before(async () => {
  kiln = await startTestKiln();
});
after(() => kiln.close());
beforeEach(() => kiln.reset());

/** A count from Kiln's metadata, for what the API does not show (rows and depths). */
async function count(query: RawBuilder<unknown>): Promise<number> {
  const { rows } = await sql<{ n: number }>`${query}`.execute(kiln.kiln.meta.db);
  return Number(rows[0]!.n);
}

const layersUnder = (snapshotId: string) =>
  count(
    sql`with recursive chain(id) as (select cast(${snapshotId} as text) union all select base_snapshot_id from layer_bases join chain on layer_id = chain.id) select count(*) as n from chain`,
  );

const assertSameBlocks = (actual: Map<number, Buffer>, expected: Map<number, Buffer>) => {
  assert.deepEqual(
    [...actual.keys()].sort((a, b) => a - b),
    [...expected.keys()].sort((a, b) => a - b),
  );
  for (const [index, data] of expected) assert.ok(actual.get(index)!.equals(data), `block ${index} differs`);
};

describe("layered manifests", () => {
  it("keeps every byte of children, copies and volumes when the snapshots beneath are deleted", async () => {
    const ec2 = kiln.ec2();
    const [a0, a1, a2, b1, c3] = [0, 1, 2, 3, 4].map(() => randomBytes(BLOCK));
    const grandparent = await writeSnapshot(
      kiln,
      new Map([
        [0, a0!],
        [1, a1!],
        [2, a2!],
      ]),
    );
    // The child rewrites block 1 and zeroes block 2: the zeros must hide the grandparent's a2.
    const parent = await writeSnapshot(
      kiln,
      new Map([
        [1, b1!],
        [2, Buffer.alloc(BLOCK)],
      ]),
      { parent: grandparent },
    );
    const child = await writeSnapshot(kiln, new Map([[3, c3!]]), { parent });
    const { SnapshotId: copy } = await ec2.send(new CopySnapshotCommand({ SourceSnapshotId: parent, SourceRegion: "us-east-1" }));
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: parent }));

    const parentBlocks = new Map([
      [0, a0!],
      [1, b1!],
    ]);
    assertSameBlocks(await readSnapshot(kiln, child), new Map([...parentBlocks, [3, c3!]]));

    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: grandparent }));
    await ec2.send(new DeleteSnapshotCommand({ SnapshotId: parent }));

    assertSameBlocks(await readSnapshot(kiln, child), new Map([...parentBlocks, [3, c3!]]));
    assertSameBlocks(await readSnapshot(kiln, copy!), parentBlocks);
    const { SnapshotId: ofVolume } = await ec2.send(new CreateSnapshotCommand({ VolumeId: volume.VolumeId }));
    await waitUntilSnapshotCompleted({ client: ec2, maxWaitTime: 30 }, { SnapshotIds: [ofVolume!] });
    assertSameBlocks(await readSnapshot(kiln, ofVolume!), parentBlocks);

    // Nothing is left resting on a deleted snapshot.
    assert.equal(await count(sql`select count(*) as n from layer_bases where base_snapshot_id in (${grandparent}, ${parent})`), 0);
    await ec2.send(new DeleteVolumeCommand({ VolumeId: volume.VolumeId }));
    assert.equal(await count(sql`select count(*) as n from layer_bases where layer_id = ${volume.VolumeId}`), 0);
  });

  it("reads a chain of 40 generations back whole, never more than 16 layers deep", async () => {
    const expected = new Map<number, Buffer>();
    let snapshotId: string | undefined;
    for (let generation = 0; generation < 40; generation++) {
      const data = randomBytes(BLOCK);
      // Each generation adds a block and rewrites the one before.
      const blocks = new Map([[generation, data]]);
      if (generation > 0) blocks.set(generation - 1, randomBytes(BLOCK));
      snapshotId = await writeSnapshot(kiln, blocks, { parent: snapshotId });
      for (const [index, block] of blocks) expected.set(index, block);
      const depth = await layersUnder(snapshotId);
      assert.ok(depth <= 16, `generation ${generation} stands on ${depth} layers`);
    }
    assertSameBlocks(await readSnapshot(kiln, snapshotId!), expected);
  });

  it("makes a volume from a snapshot, and a snapshot of it, without copying the manifest", async () => {
    const ec2 = kiln.ec2();
    const blocks = new Map(Array.from({ length: 64 }, (_, i) => [i * 3, randomBytes(BLOCK)] as [number, Buffer]));
    const source = await writeSnapshot(kiln, blocks);
    const rows = () => count(sql`select (select count(*) from snapshot_blocks) + (select count(*) from volume_blocks) as n`);
    const before = await rows();
    const volume = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", SnapshotId: source }));
    const { SnapshotId } = await ec2.send(new CreateSnapshotCommand({ VolumeId: volume.VolumeId }));
    await waitUntilSnapshotCompleted({ client: ec2, maxWaitTime: 30 }, { SnapshotIds: [SnapshotId!] });
    assert.equal(await rows(), before, "no manifest rows were copied");
    assertSameBlocks(await readSnapshot(kiln, SnapshotId!), blocks);
  });

  it("lists the blocks of manifests of thousands of rows, layer over layer, page by page", async () => {
    // Rows written straight into the manifests (thousands of PutSnapshotBlock would upload GiBs):
    // the lists read each layer 1,024 rows at a time, and must resolve across those reads.
    const ebs = kiln.ebs();
    const chunk = (n: number) => n.toString(16).padStart(64, "0");
    const snapshotOf = async (rows: Map<number, string>, parent?: string) => {
      const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 65536, ParentSnapshotId: parent }));
      const entries = [...rows].map(([block_index, chunk]) => ({ snapshot_id: SnapshotId!, block_index, chunk, written: 0 }));
      for (let i = 0; i < entries.length; i += 500)
        await kiln.kiln.meta.db
          .insertInto("snapshot_blocks")
          .values(entries.slice(i, i + 500))
          .execute();
      await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 0 }));
      return SnapshotId!;
    };
    const parentRows = new Map(Array.from({ length: 3000 }, (_, i) => [i * 3, chunk(i + 1)] as [number, string]));
    // The child overrides every 4th block with new data and every 5th with zeros (hiding the parent's), and adds its own far out.
    const childRows = new Map<number, string>();
    for (let index = 0; index < 9000; index++) {
      if (index % 5 === 0) childRows.set(index, "");
      else if (index % 4 === 0) childRows.set(index, chunk(100000 + index));
    }
    for (let i = 0; i < 500; i++) childRows.set(100_000_000 + i * 7, chunk(200000 + i));
    const parent = await snapshotOf(parentRows);
    const child = await snapshotOf(childRows, parent);

    const indices = [...new Set([...parentRows.keys(), ...childRows.keys()])].sort((a, b) => a - b);
    const resolved = (index: number) => childRows.get(index) ?? parentRows.get(index) ?? "";
    const token = (chunk: string) => (chunk === "" ? undefined : Buffer.from(chunk, "hex").toString("base64"));
    const listed: [number, string | undefined][] = [];
    for (let NextToken: string | undefined, first = true; first || NextToken; first = false) {
      const page = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: child, MaxResults: 1000, NextToken }));
      listed.push(...page.Blocks!.map((b) => [b.BlockIndex!, b.BlockToken] as [number, string | undefined]));
      NextToken = page.NextToken;
    }
    assert.deepEqual(
      listed,
      indices.filter((i) => resolved(i) !== "").map((i) => [i, token(resolved(i))]),
    );

    const changed: [number, string | undefined, string | undefined][] = [];
    for (let NextToken: string | undefined, first = true; first || NextToken; first = false) {
      const page = await ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: parent, SecondSnapshotId: child, MaxResults: 1000, NextToken }));
      for (const block of page.ChangedBlocks!) changed.push([block.BlockIndex!, block.FirstBlockToken, block.SecondBlockToken]);
      NextToken = page.NextToken;
    }
    const differing = indices.filter((i) => resolved(i) !== (parentRows.get(i) ?? ""));
    assert.deepEqual(
      changed,
      differing.map((i) => [i, token(parentRows.get(i) ?? ""), token(resolved(i))]),
    );
  });
});
