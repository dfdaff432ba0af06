// The EBS direct APIs through @aws-sdk/client-ebs: bytes written block by block come back
// identical; zero blocks cost nothing; a child snapshot shares its parent's chunks.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, beforeEach, describe, it } from "node:test";
import {
  CompleteSnapshotCommand,
  GetSnapshotBlockCommand,
  ListChangedBlocksCommand,
  ListSnapshotBlocksCommand,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
  type EBSClient,
} from "@aws-sdk/client-ebs";
import { DescribeTagsCommand } from "@aws-sdk/client-ec2";
import { storedBlocks } from "./helpers/data.js";
import { startTestKiln, type TestKiln } from "./helpers/kiln.js";

const BLOCK = 512 * 1024;
let kiln: TestKiln;
let ebs: EBSClient;

before(async () => {
  kiln = await startTestKiln();
  ebs = kiln.ebs();
});
after(() => kiln.close());
let chunksAtStart = 0;
beforeEach(async () => {
  await kiln.reset();
  // The public catalogue's root blocks are there from the start; tests count what they add.
  chunksAtStart = await storedBlocks(kiln);
});

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("base64");

async function put(snapshotId: string, index: number, data: Buffer) {
  return ebs.send(
    new PutSnapshotBlockCommand({
      SnapshotId: snapshotId,
      BlockIndex: index,
      BlockData: data,
      DataLength: data.length,
      Checksum: sha256(data),
      ChecksumAlgorithm: "SHA256",
    }),
  );
}

async function read(snapshotId: string, index: number, token: string): Promise<Buffer> {
  const block = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: index, BlockToken: token }));
  assert.equal(block.DataLength, BLOCK);
  const data = Buffer.from(await block.BlockData!.transformToByteArray());
  assert.equal(block.Checksum, sha256(data));
  return data;
}

async function allBlocks(snapshotId: string) {
  const blocks: { BlockIndex?: number; BlockToken?: string }[] = [];
  let NextToken: string | undefined;
  do {
    const page = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId, MaxResults: 100, NextToken }));
    blocks.push(...page.Blocks!);
    NextToken = page.NextToken;
  } while (NextToken);
  return blocks;
}

async function errorOf(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    const e = error as { name: string; message: string; Reason?: string; $metadata?: { httpStatusCode?: number } };
    return { name: e.name, reason: e.Reason, status: e.$metadata?.httpStatusCode, message: e.message };
  }
  assert.fail("the call succeeded");
}

describe("EBS direct APIs", () => {
  it("writes blocks and reads back exactly the same bytes", async () => {
    const started = await ebs.send(new StartSnapshotCommand({ VolumeSize: 8, Description: "known bytes", Tags: [{ Key: "purpose", Value: "test" }] }));
    assert.match(started.SnapshotId!, /^snap-[0-9a-f]{17}$/);
    assert.equal(started.Status, "pending");
    assert.equal(started.BlockSize, BLOCK);
    assert.equal(started.VolumeSize, 8);
    assert.equal(started.OwnerId, "000000000000");
    assert.ok(started.StartTime instanceof Date && Math.abs(started.StartTime.getTime() - Date.now()) < 60_000);

    const written = new Map<number, Buffer>([
      [0, randomBytes(BLOCK)],
      [1, Buffer.alloc(BLOCK, 0x5a)],
      [7, randomBytes(BLOCK)],
      [8 * 2048 - 1, randomBytes(BLOCK)],
    ]);
    for (const [index, data] of written) await put(started.SnapshotId!, index, data);
    const completed = await ebs.send(new CompleteSnapshotCommand({ SnapshotId: started.SnapshotId!, ChangedBlocksCount: written.size }));
    assert.equal(completed.Status, "completed");

    const blocks = await allBlocks(started.SnapshotId!);
    assert.deepEqual(
      blocks.map((b) => b.BlockIndex),
      [...written.keys()],
    );
    for (const block of blocks) assert.deepEqual(await read(started.SnapshotId!, block.BlockIndex!, block.BlockToken!), written.get(block.BlockIndex!));

    // Tags given at StartSnapshot land on the snapshot in the shared tag table.
    const tags = await kiln.ec2().send(new DescribeTagsCommand({ Filters: [{ Name: "resource-id", Values: [started.SnapshotId!] }] }));
    assert.deepEqual(tags.Tags, [{ Key: "purpose", ResourceId: started.SnapshotId, ResourceType: "snapshot", Value: "test" }]);
  });

  it("stores nothing for zero blocks and each distinct block once", async () => {
    const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1024 }));
    const data = randomBytes(BLOCK);
    await put(SnapshotId!, 10, data);
    await put(SnapshotId!, 20, data);
    await put(SnapshotId!, 30, Buffer.alloc(BLOCK));
    await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 3 }));
    assert.equal((await storedBlocks(kiln)) - chunksAtStart, 1, "one chunk for two identical blocks, none for zeros");
    const blocks = await allBlocks(SnapshotId!);
    assert.deepEqual(
      blocks.map((b) => b.BlockIndex),
      [10, 20],
    );
  });

  it("shares the parent's chunks in a child snapshot and lists what changed", async () => {
    const parent = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
    const a = randomBytes(BLOCK);
    const b = randomBytes(BLOCK);
    await put(parent.SnapshotId!, 0, a);
    await put(parent.SnapshotId!, 1, b);
    await ebs.send(new CompleteSnapshotCommand({ SnapshotId: parent.SnapshotId, ChangedBlocksCount: 2 }));

    const child = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ParentSnapshotId: parent.SnapshotId }));
    assert.equal(child.ParentSnapshotId, parent.SnapshotId);
    const c = randomBytes(BLOCK);
    await put(child.SnapshotId!, 1, c);
    await put(child.SnapshotId!, 0, Buffer.alloc(BLOCK));
    await put(child.SnapshotId!, 5, a);
    await ebs.send(new CompleteSnapshotCommand({ SnapshotId: child.SnapshotId, ChangedBlocksCount: 3 }));
    assert.equal((await storedBlocks(kiln)) - chunksAtStart, 3, "a, b and c: the child's copy of a is shared");

    const childBlocks = await allBlocks(child.SnapshotId!);
    assert.deepEqual(
      childBlocks.map((x) => x.BlockIndex),
      [1, 5],
    );
    assert.deepEqual(await read(child.SnapshotId!, 1, childBlocks[0]!.BlockToken!), c);
    assert.deepEqual(await read(child.SnapshotId!, 5, childBlocks[1]!.BlockToken!), a);

    const changed = await ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: parent.SnapshotId, SecondSnapshotId: child.SnapshotId }));
    assert.deepEqual(
      changed.ChangedBlocks!.map((x) => [x.BlockIndex, Boolean(x.FirstBlockToken), Boolean(x.SecondBlockToken)]),
      [
        [0, true, false],
        [1, true, true],
        [5, false, true],
      ],
    );
    assert.deepEqual(await read(parent.SnapshotId!, 1, changed.ChangedBlocks![1]!.FirstBlockToken!), b);
  });

  it("verifies checksums: a block's, and the whole snapshot's LINEAR aggregate", async () => {
    const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
    const data = randomBytes(BLOCK);
    const bad = await errorOf(
      ebs.send(
        new PutSnapshotBlockCommand({
          SnapshotId,
          BlockIndex: 0,
          BlockData: data,
          DataLength: BLOCK,
          Checksum: sha256(Buffer.alloc(BLOCK, 1)),
          ChecksumAlgorithm: "SHA256",
        }),
      ),
    );
    assert.equal(bad.name, "ValidationException");
    assert.equal(bad.reason, "INVALID_BLOCK");
    await put(SnapshotId!, 3, data);
    const zero = Buffer.alloc(BLOCK);
    await put(SnapshotId!, 4, zero);
    const digest = (block: Buffer) => createHash("sha256").update(block).digest();
    const wrong = await errorOf(
      ebs.send(
        new CompleteSnapshotCommand({
          SnapshotId,
          ChangedBlocksCount: 2,
          Checksum: sha256(digest(data)),
          ChecksumAlgorithm: "SHA256",
          ChecksumAggregationMethod: "LINEAR",
        }),
      ),
    );
    assert.equal(wrong.name, "ValidationException");
    const count = await errorOf(ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 5 })));
    assert.equal(count.name, "ValidationException");
    const linear = sha256(Buffer.concat([digest(data), digest(zero)]));
    const done = await ebs.send(
      new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 2, Checksum: linear, ChecksumAlgorithm: "SHA256", ChecksumAggregationMethod: "LINEAR" }),
    );
    assert.equal(done.Status, "completed");
  });

  it("refuses what AWS refuses", async () => {
    assert.equal((await errorOf(ebs.send(new StartSnapshotCommand({ VolumeSize: 0 })))).reason, "INVALID_VOLUME_SIZE");
    const missing = await errorOf(ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: "snap-0123456789abcdef0" })));
    assert.equal(missing.name, "ResourceNotFoundException");
    assert.equal(missing.status, 404);
    const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
    const outside = await errorOf(put(SnapshotId!, 2048, randomBytes(BLOCK)));
    assert.equal(outside.reason, "INVALID_BLOCK");
    const short = await errorOf(
      ebs.send(
        new PutSnapshotBlockCommand({
          SnapshotId,
          BlockIndex: 0,
          BlockData: Buffer.alloc(1000, 1),
          DataLength: 1000,
          Checksum: sha256(Buffer.alloc(1000, 1)),
          ChecksumAlgorithm: "SHA256",
        }),
      ),
    );
    assert.equal(short.name, "ValidationException");
    const pending = await errorOf(ebs.send(new ListSnapshotBlocksCommand({ SnapshotId })));
    assert.equal(pending.name, "ValidationException");
    await ebs.send(new CompleteSnapshotCommand({ SnapshotId, ChangedBlocksCount: 0 }));
    const late = await errorOf(put(SnapshotId!, 0, randomBytes(BLOCK)));
    assert.equal(late.name, "ConflictException");
    const token = await errorOf(ebs.send(new GetSnapshotBlockCommand({ SnapshotId, BlockIndex: 0, BlockToken: "AAAA" })));
    assert.equal(token.reason, "INVALID_BLOCK_TOKEN");
  });

  it("keeps one account's snapshots from another", async () => {
    const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }));
    const other = kiln.ebs({ accessKeyId: "111111111111" });
    const error = await errorOf(
      other.send(
        new PutSnapshotBlockCommand({
          SnapshotId,
          BlockIndex: 0,
          BlockData: randomBytes(BLOCK),
          DataLength: BLOCK,
          Checksum: "x",
          ChecksumAlgorithm: "SHA256",
        }),
      ),
    );
    assert.equal(error.name, "ResourceNotFoundException");
  });

  it("makes a ClientToken'd StartSnapshot idempotent", async () => {
    const first = await ebs.send(new StartSnapshotCommand({ VolumeSize: 2, ClientToken: "token-1" }));
    const again = await ebs.send(new StartSnapshotCommand({ VolumeSize: 2, ClientToken: "token-1" }));
    assert.equal(again.SnapshotId, first.SnapshotId);
  });
});
