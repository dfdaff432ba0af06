// Kiln's data in an S3-compatible object store, checked against two S3 implementations: moto_server
// (one Kiln did not write) and a second Kiln. The blob home (bucket objects) and the chunk home
// (snapshot data) are tested on their own, then a whole Kiln keeps its data there: objects,
// snapshots and an imported disk read back byte for byte, with nothing in its data folder.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { DescribeImportSnapshotTasksCommand, ImportSnapshotCommand, type ImportSnapshotTask } from "@aws-sdk/client-ec2";
import {
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { BLOCK_SIZE, checkChunkHome, chunkStoreIn, ZERO_CHUNK, type ChunkStore } from "../src/store/blocks/chunks.js";
import { bucketHome } from "../src/store/blocks/bucket-home.js";
import { packHome } from "../src/store/blocks/pack-home.js";
import { openMetaStore, type MetaStore } from "../src/store/meta/database.js";
import { newBlobId, wholeRanges } from "../src/store/objects/blobs.js";
import { bucketBlobStore } from "../src/store/objects/bucket-blobs.js";
import { assertBlocksHold, readSnapshot, writeSnapshot } from "./helpers/data.js";
import { makeDataDisk } from "./helpers/disks.js";
import { freshBucket, startTestKiln, type TestBucket } from "./helpers/kiln.js";
import { startMotoServer } from "./helpers/moto.js";
import { scratch } from "./helpers/tools.js";

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
const MiB = 1024 * 1024;

async function collected(stream: Readable): Promise<Buffer> {
  const pieces: Buffer[] = [];
  for await (const piece of stream) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}

/** Keys of the objects in a bucket (whole keys, prefix and all) that start with `under`. */
async function names(made: TestBucket, under = ""): Promise<string[]> {
  const found: string[] = [];
  let ContinuationToken: string | undefined;
  do {
    const page = await made.bucket.client.send(new ListObjectsV2Command({ Bucket: made.bucket.name, Prefix: under, ContinuationToken }));
    found.push(...(page.Contents ?? []).map((o) => o.Key!));
    ContinuationToken = page.NextContinuationToken;
  } while (ContinuationToken);
  return found.sort();
}

const services = [
  {
    name: "moto_server",
    async start() {
      const moto = await startMotoServer();
      return { endpoint: moto.endpoint, stop: () => moto.stop() };
    },
  },
  {
    name: "a second Kiln",
    async start() {
      // Its own data in its folder, whatever store the suite runs on.
      const store = await startTestKiln({}, { KILN_OBJECT_STORE_BUCKET: "" });
      return { endpoint: store.url, stop: () => store.close() };
    },
  },
];

for (const service of services) {
  describe(`an object store: ${service.name}`, () => {
    let endpoint: string;
    let stop: () => Promise<void>;
    const made: TestBucket[] = [];
    const bucket = async (prefix = "") => {
      const fresh = await freshBucket(endpoint, prefix);
      made.push(fresh);
      return fresh;
    };
    before(async () => {
      ({ endpoint, stop } = await service.start());
    });
    after(async () => {
      for (const fresh of made) await fresh.drop().catch(() => {});
      await stop();
    });

    it("holds blobs: one small, one in several parts, read whole, in ranges across blobs and at random offsets", async () => {
      const made = await bucket("kiln/");
      // What Kiln sends: no aws-chunked body with a checksum trailer, which not every store reads.
      const encodings = new Set<string>();
      made.bucket.client.middlewareStack.add(
        (next) => async (args) => {
          const { headers } = args.request as { headers: Record<string, string> };
          encodings.add(`${headers["content-encoding"] ?? "none"} ${headers["x-amz-content-sha256"] ?? ""}`.trim());
          return next(args);
        },
        { step: "finalizeRequest", priority: "low" },
      );
      const blobs = bucketBlobStore(made.bucket);
      const small = randomBytes(1000);
      // Past the 8 MiB part size: a multipart upload of three parts.
      const large = randomBytes(20 * MiB + 123);
      const a = await blobs.write(Readable.from([small]));
      const b = await blobs.write(
        Readable.from(
          (function* () {
            for (let at = 0; at < large.length; at += MiB) yield large.subarray(at, at + MiB);
          })(),
        ),
      );
      assert.deepEqual([a.size, b.size], [small.length, large.length]);
      // A body whose length is known (a request's Content-Length) goes out as one streamed PutObject.
      const c = await blobs.write(
        Readable.from(
          (function* () {
            for (let at = 0; at < large.length; at += MiB) yield large.subarray(at, at + MiB);
          })(),
        ),
        large.length,
      );
      assert.equal(c.size, large.length);
      for (const encoding of encodings) assert.doesNotMatch(encoding, /aws-chunked|STREAMING/, "a plain body, not aws-chunked");
      assert.equal(sha256(await collected(blobs.read([{ id: c.id, start: 0, end: c.size }]))), sha256(large));
      await blobs.remove(c.id);
      assert.deepEqual(await names(made), [`kiln/objects/${a.id}`, `kiln/objects/${b.id}`].sort(), "objects under the prefix, nothing else");
      assert.deepEqual(await names(made, "objects/"), [], "nothing outside the prefix");

      const parts = [
        { id: a.id, size: a.size },
        { id: b.id, size: b.size },
      ];
      const whole = Buffer.concat([small, large]);
      assert.equal(sha256(await collected(blobs.read(wholeRanges(parts)))), sha256(whole));
      const across = await collected(
        blobs.read([
          { id: a.id, start: 900, end: 1000 },
          { id: b.id, start: 0, end: 5 },
          { id: b.id, start: 9 * MiB, end: 9 * MiB + 7 },
        ]),
      );
      assert.ok(across.equals(Buffer.concat([small.subarray(900), large.subarray(0, 5), large.subarray(9 * MiB, 9 * MiB + 7)])));

      const reader = await blobs.openRandom(parts);
      try {
        assert.equal(reader.size, whole.length);
        for (const [offset, length] of [
          [0, 10],
          [990, 20],
          [12 * MiB, MiB],
          [whole.length - 3, 3],
        ] as const) {
          assert.ok((await reader.read(offset, length)).equals(whole.subarray(offset, offset + length)), `${length} bytes at ${offset}`);
        }
      } finally {
        await reader.close();
      }
    });

    it("copies blobs (CopyObject, or streamed when larger than one copy may be), and removes a blob only when its readers finish", async () => {
      const made = await bucket();
      const data = randomBytes(3 * MiB);
      for (const copyObjectLimit of [undefined, MiB]) {
        const blobs = bucketBlobStore(made.bucket, { copyObjectLimit });
        const original = await blobs.write(Readable.from([data]));
        const copy = await blobs.copy(original.id);
        assert.notEqual(copy, original.id);
        assert.ok((await collected(blobs.read([{ id: copy, start: 0, end: data.length }]))).equals(data));

        const reader = await blobs.openRandom([{ id: original.id, size: data.length }]);
        await blobs.remove(original.id);
        assert.ok((await reader.read(MiB, 100)).equals(data.subarray(MiB, MiB + 100)), "a held blob stays until its reader is done");
        await reader.close();
        const left = [];
        for await (const { id } of blobs.ids()) left.push(id);
        assert.deepEqual(left, [copy], "the original went when its reader closed");
        await blobs.remove(copy);
      }
    });

    it("leaves nothing when a write fails, and its sweep aborts uploads a crash left, once they are old", async () => {
      const made = await bucket();
      const blobs = bucketBlobStore(made.bucket);
      const failing = Readable.from(
        (async function* () {
          yield randomBytes(9 * MiB);
          yield randomBytes(MiB);
          throw new Error("the client went away");
        })(),
      );
      await assert.rejects(blobs.write(failing), /the client went away/);
      assert.deepEqual(await names(made), [], "no object");
      const failingKnown = Readable.from(
        (async function* () {
          yield randomBytes(MiB);
          throw new Error("the client went away again");
        })(),
      );
      await assert.rejects(blobs.write(failingKnown, 4 * MiB), /the client went away again/);
      assert.deepEqual(await names(made), [], "no object from a streamed PutObject cut short");
      const uploads = async () => (await made.bucket.client.send(new ListMultipartUploadsCommand({ Bucket: made.bucket.name }))).Uploads ?? [];
      assert.deepEqual(await uploads(), [], "no upload left open");

      // What a node that died mid-upload leaves: an upload no one completes.
      await made.bucket.client.send(new CreateMultipartUploadCommand({ Bucket: made.bucket.name, Key: `objects/${newBlobId()}` }));
      await blobs.clearLeftovers(Date.now() - 60_000);
      assert.equal((await uploads()).length, 1, "a fresh upload may be another node's");
      await blobs.clearLeftovers(Date.now() + 60_000);
      assert.deepEqual(await uploads(), []);
    });

    /** A chunk store in a fresh bucket, over a fresh metadata store; both closed after `use`. */
    const withBucketChunks = async (use: (made: TestBucket, chunks: ChunkStore, meta: MetaStore) => Promise<void>) => {
      const made = await bucket();
      const meta = await openMetaStore({ dataDir: scratch() });
      const chunks = chunkStoreIn(meta.db, bucketHome(made.bucket, meta.db));
      try {
        await use(made, chunks, meta);
      } finally {
        await chunks.close();
        await meta.close();
      }
    };

    it("holds chunks: one object per distinct block, named by its SHA-256, never zeros, read back byte for byte", async () => {
      await withBucketChunks(async (made, chunks, meta) => {
        const [x, y] = [randomBytes(BLOCK_SIZE), randomBytes(BLOCK_SIZE)];
        const ids = await Promise.all([chunks.put(x), chunks.put(y), chunks.put(Buffer.from(x)), chunks.put(Buffer.alloc(BLOCK_SIZE))]);
        assert.deepEqual(ids, [sha256(x), sha256(y), sha256(x), ZERO_CHUNK]);
        assert.equal(await chunks.put(y), sha256(y), "a block put again is found, not stored again");
        const objects = await names(made);
        assert.equal(objects.length, 2, objects.join(", "));
        for (const block of [x, y]) assert.ok(objects.some((name) => name.startsWith(`chunks/${sha256(block)}.`)));
        assert.ok((await chunks.get(sha256(x))).equals(x));
        assert.ok((await chunks.get(sha256(y))).equals(y));
        assert.ok((await chunks.get(ZERO_CHUNK)).equals(Buffer.alloc(BLOCK_SIZE)));

        // A data folder's pack home cannot read this store's chunks, and says so at start.
        await assert.rejects(checkChunkHome(meta.db, packHome(scratch(), meta.db), "the data folder"), /another data home/);
        await checkChunkHome(meta.db, bucketHome(made.bucket, meta.db), "the bucket");
      });
    });

    it("collects chunks: forgets those nothing names once past the grace period, deletes their objects, and sweeps objects no row names", async () => {
      await withBucketChunks(async (made, chunks, meta) => {
        const [named, unnamed] = [randomBytes(BLOCK_SIZE), randomBytes(BLOCK_SIZE)];
        await chunks.put(named);
        await chunks.put(unnamed);
        await meta.db
          .insertInto("snapshot_blocks")
          .values({ snapshot_id: "snap-0123456789abcdef0", block_index: 0, chunk: sha256(named), written: 1 })
          .execute();
        // An object whose row was never committed (a node died between the two).
        await made.bucket.client.send(new PutObjectCommand({ Bucket: made.bucket.name, Key: `chunks/${sha256(unnamed)}.deadbeef0000`, Body: unnamed }));

        const spared = await chunks.collect(60_000);
        assert.deepEqual(spared, { kept: 2, removed: 0, packsRemoved: 0, packsCompacted: 0 }, "everything is within the grace period");
        const result = await chunks.collect(0, Date.now() + 1000);
        assert.deepEqual(result, { kept: 1, removed: 1, packsRemoved: 2, packsCompacted: 0 });
        const left = await names(made);
        assert.equal(left.length, 1);
        assert.ok(left[0]!.startsWith(`chunks/${sha256(named)}.`));
        assert.ok((await chunks.get(sha256(named))).equals(named));
        await assert.rejects(chunks.get(sha256(unnamed)), /not stored/);
        assert.equal(await chunks.put(unnamed), sha256(unnamed), "a forgotten chunk is stored afresh when put again");
        assert.ok((await chunks.get(sha256(unnamed))).equals(unnamed));
      });
    });

    it("keeps a whole Kiln's data: bucket objects, snapshot blocks and an imported disk, none of it in the data folder", async () => {
      const made = await bucket("node-data/");
      const kiln = await startTestKiln({}, made.env);
      try {
        const s3 = kiln.s3();
        await s3.send(new CreateBucketCommand({ Bucket: "disks" }));
        const disk = await makeDataDisk(scratch());
        await s3.send(new PutObjectCommand({ Bucket: "disks", Key: "data.raw", Body: readFileSync(disk) }));
        const got = await s3.send(new GetObjectCommand({ Bucket: "disks", Key: "data.raw", Range: "bytes=1048576-1048591" }));
        assert.ok(Buffer.from(await got.Body!.transformToByteArray()).equals(readFileSync(disk).subarray(MiB, MiB + 16)));

        const blocks = new Map([
          [0, randomBytes(BLOCK_SIZE)],
          [7, randomBytes(BLOCK_SIZE)],
        ]);
        const written = await writeSnapshot(kiln, blocks);
        assert.deepEqual(await readSnapshot(kiln, written), blocks);

        const ec2 = kiln.ec2();
        const { ImportTaskId } = await ec2.send(
          new ImportSnapshotCommand({ DiskContainer: { Format: "RAW", UserBucket: { S3Bucket: "disks", S3Key: "data.raw" } } }),
        );
        let task: ImportSnapshotTask | undefined;
        for (let tries = 0; tries < 600; tries++) {
          task = (await ec2.send(new DescribeImportSnapshotTasksCommand({ ImportTaskIds: [ImportTaskId!] }))).ImportSnapshotTasks![0]!;
          if (task.SnapshotTaskDetail!.Status !== "active") break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        assert.equal(task!.SnapshotTaskDetail!.Status, "completed", task!.SnapshotTaskDetail!.StatusMessage);
        const imported = task!.SnapshotTaskDetail!.SnapshotId!;
        assertBlocksHold(await readSnapshot(kiln, imported), readFileSync(disk), imported);

        const stored = await names(made);
        assert.ok(
          stored.some((name) => name.startsWith("node-data/objects/")),
          "bucket objects are in the store",
        );
        assert.ok(
          stored.some((name) => name.startsWith("node-data/chunks/")),
          "snapshot data is in the store",
        );
        assert.deepEqual(
          readdirSync(kiln.dataDir).filter((name) => name === "packs" || name === "objects"),
          [],
          "the data folder holds no data",
        );
        const health = (await (await fetch(`${kiln.url}/_kiln/health`)).json()) as { dependencies: { data: { status: string } }; store: { data: unknown } };
        assert.equal(health.dependencies.data.status, "available");
        assert.deepEqual(health.store.data, { kind: "object-store", bucket: made.bucket.name, prefix: "node-data/", endpoint });
      } finally {
        await kiln.close();
      }
    });
  });
}
