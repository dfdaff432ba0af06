// The chunk store's files: a block put on a pool worker lands as <root>/ab/cd/<sha256> holding
// exactly the block, written with O_DIRECT where the file system allows it and through the page
// cache where it refuses (a misaligned buffer is refused like an unwilling file system); a block
// stored twice is stored once; zeros are never stored.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { chunkPath, storeChunkJob } from "../src/store/blocks/chunk-files.js";
import { BLOCK_SIZE, fileChunkStore, ZERO_CHUNK } from "../src/store/blocks/chunks.js";
import { scratch } from "./helpers/tools.js";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** Every file under `root`. */
function filesUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name))
    .sort();
}

describe("chunk files", () => {
  it("stores blocks by their SHA-256, once each, and never a block of zeros", async () => {
    const root = join(scratch(), "chunks");
    const store = fileChunkStore(root);
    const blocks = [randomBytes(BLOCK_SIZE), randomBytes(BLOCK_SIZE)];
    const ids = await Promise.all([...blocks, blocks[0]!, Buffer.alloc(BLOCK_SIZE)].map((block) => store.put(block)));
    assert.deepEqual(ids, [sha256(blocks[0]!), sha256(blocks[1]!), sha256(blocks[0]!), ZERO_CHUNK]);
    assert.deepEqual(filesUnder(root), ids.slice(0, 2).map((id) => chunkPath(root, id)).sort());
    for (const [i, block] of blocks.entries()) {
      assert.ok(readFileSync(chunkPath(root, ids[i]!)).equals(block));
      assert.ok((await store.get(ids[i]!)).equals(block));
    }
  });

  it("writes through the page cache when O_DIRECT is refused", async () => {
    const root = join(scratch(), "chunks");
    // 16 bytes into a shared buffer: no O_DIRECT write accepts that alignment.
    const shared = new SharedArrayBuffer(BLOCK_SIZE + 16);
    const block = Buffer.from(shared, 16, BLOCK_SIZE);
    randomBytes(BLOCK_SIZE).copy(block);
    const { result } = await storeChunkJob({ root, block: shared, offset: 16, length: BLOCK_SIZE });
    assert.equal(result.chunk, sha256(block));
    assert.ok(readFileSync(chunkPath(root, result.chunk)).equals(block));
    assert.deepEqual(filesUnder(root), [chunkPath(root, result.chunk)], "a temporary file was left behind");
  });
});
