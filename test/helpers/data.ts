// Snapshot data and error helpers the suites share: blocks written and read back through the
// EBS direct APIs, sizes on disk, and the EC2 error a call ends in.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import {
  CompleteSnapshotCommand,
  GetSnapshotBlockCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
  type EBSClient,
} from "@aws-sdk/client-ebs";
import { ObjectStoreBucket } from "../../src/store/bucket/bucket.js";
import type { TestKiln } from "./kiln.js";
import { run, scratch } from "./tools.js";

export const BLOCK = 512 * 1024;

/**
 * A completed snapshot holding `blocks` (index → data), written with the EBS direct APIs; with
 * `parent`, a child snapshot holding the parent's blocks and these over them.
 */
export async function writeSnapshot(
  kiln: TestKiln,
  blocks: ReadonlyMap<number, Buffer>,
  options: { size?: number; accessKeyId?: string; region?: string; parent?: string } = {},
): Promise<string> {
  const ebs = kiln.ebs({ accessKeyId: options.accessKeyId, region: options.region });
  const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: options.size ?? 8, ParentSnapshotId: options.parent }));
  for (const [index, data] of blocks) {
    await ebs.send(
      new PutSnapshotBlockCommand({
        SnapshotId,
        BlockIndex: index,
        BlockData: data,
        DataLength: data.length,
        Checksum: createHash("sha256").update(data).digest("base64"),
        ChecksumAlgorithm: "SHA256",
      }),
    );
  }
  await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: blocks.size }));
  return SnapshotId!;
}

/** Every non-zero block of a snapshot, read back through the EBS direct APIs. */
export async function readSnapshot(kiln: TestKiln, snapshotId: string, region?: string): Promise<Map<number, Buffer>> {
  return readSnapshotBlocks(kiln.ebs({ region }), snapshotId);
}

/** A snapshot's blocks (by index) must read as `expected`, block for block, zeros where none is stored. */
export function assertBlocksHold(blocks: Map<number, Buffer>, expected: Buffer, snapshotId: string): void {
  const zeros = Buffer.alloc(BLOCK);
  for (let index = 0; index * BLOCK < expected.length; index++) {
    const want = Buffer.alloc(BLOCK);
    expected.copy(want, 0, index * BLOCK, Math.min(expected.length, (index + 1) * BLOCK));
    assert.ok((blocks.get(index) ?? zeros).equals(want), `block ${index} of ${snapshotId} differs from the disk`);
  }
  for (const index of blocks.keys()) assert.ok(index * BLOCK < expected.length, `block ${index} of ${snapshotId} lies beyond the disk`);
}

/** The blocks a snapshot holds, read through any EBS client (a Kiln in another process too). */
export async function readSnapshotBlocks(ebs: EBSClient, snapshotId: string): Promise<Map<number, Buffer>> {
  const out = new Map<number, Buffer>();
  let NextToken: string | undefined;
  do {
    const page = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId, NextToken }));
    for (const block of page.Blocks!) {
      const got = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: block.BlockIndex, BlockToken: block.BlockToken }));
      out.set(block.BlockIndex!, Buffer.from(await got.BlockData!.transformToByteArray()));
    }
    NextToken = page.NextToken;
  } while (NextToken);
  return out;
}

/** The file at `path` on the ext4 root (GPT partition 1) of a snapshot, read back through the EBS direct APIs. */
export async function fileInSnapshot(ebs: EBSClient, snapshotId: string, path: string): Promise<string> {
  const disk = join(scratch(), "snapshot.raw");
  const fd = openSync(disk, "w");
  for (const [index, data] of await readSnapshotBlocks(ebs, snapshotId)) writeSync(fd, data, 0, data.length, index * BLOCK);
  closeSync(fd);
  const table = JSON.parse(await run("sfdisk", ["--json", disk])) as { partitiontable: { sectorsize?: number; partitions: { node: string; start: number }[] } };
  const root = table.partitiontable.partitions.find((p) => p.node.endsWith("1"))!;
  const offset = root.start * (table.partitiontable.sectorsize ?? 512);
  return run("debugfs", ["-R", `cat ${path}`, `${disk}?offset=${offset}`]);
}

/** The error name (its EC2 or EBS code) a call ends in; fails the test when it succeeds. */
export async function errorName(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return (error as Error).name;
  }
  assert.fail("the call succeeded");
}

/** Bytes of the objects under `under` in a Kiln's object store bucket. */
async function bucketBytes(kiln: TestKiln, under: string): Promise<number> {
  const bucket = new ObjectStoreBucket(kiln.kiln.config.objectStore!);
  let total = 0;
  try {
    for await (const page of bucket.list(under)) for (const object of page) total += object.size;
  } finally {
    bucket.client.destroy();
  }
  return total;
}

/** Bytes of snapshot data a Kiln keeps: its pack files, or its chunk objects in the object store. */
export const chunkBytes = async (kiln: TestKiln) => (kiln.kiln.config.objectStore ? bucketBytes(kiln, "chunks/") : dirBytes(join(kiln.dataDir, "packs")));

/** Blocks a Kiln stores: its chunk bytes over the block size (slots fill packs in order; an object holds one). */
export const storedBlocks = async (kiln: TestKiln) => (await chunkBytes(kiln)) / BLOCK;

/** Everything a Kiln keeps: its data folder, and its object store bucket when it has one. */
export const keptBytes = async (kiln: TestKiln) => dirBytes(kiln.dataDir) + (kiln.kiln.config.objectStore ? await bucketBytes(kiln, "") : 0);

/** Bytes of every file under a folder (0 when it does not exist). */
export function dirBytes(dir: string): number {
  let total = 0;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    const path = join(dir, name);
    const info = statSync(path);
    total += info.isDirectory() ? dirBytes(path) : info.size;
  }
  return total;
}
