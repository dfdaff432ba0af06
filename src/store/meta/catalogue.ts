// Seeds the public catalogue into a region on first use. Ids are derived from the region and
// the image name, so every Kiln gives a catalogue image the same id; the root snapshots' one
// block is the same bytes for every image in every region, so the chunk store keeps it once.
import { createHash } from "node:crypto";
import type { CatalogueEntry } from "../../domain/catalogue.js";
import { BLOCK_SIZE, type ChunkStore } from "../blocks/chunks.js";
import type { Insertable } from "kysely";
import { insertInBatches, readInBatches } from "./batches.js";
import type { MetaDb } from "./database.js";
import type { ImageTable, SnapshotTable } from "./schema.js";

const derivedId = (prefix: string, region: string, name: string) => `${prefix}-${createHash("sha256").update(`${region}\0${name}`).digest("hex").slice(0, 17)}`;

/**
 * The first block of every catalogue image's root disk: a boot signature and a line that says
 * what it is. One block for them all: seeding a region (on its first request, and after every
 * reset) stores it once, not once an image.
 */
function rootBlock(): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  block.write("Kiln catalogue image: a public image's stand-in, with no operating system\n", 0, "utf8");
  block[510] = 0x55;
  block[511] = 0xaa;
  return block;
}

export interface Catalogue {
  ensure(region: string): Promise<void>;
  /** Forget which regions are seeded (after /_kiln/reset). */
  forget(): void;
}

export function catalogue(db: MetaDb, chunks: ChunkStore, entries: readonly CatalogueEntry[]): Catalogue {
  const seeded = new Map<string, Promise<void>>();
  /**
   * The region's missing catalogue images, in one transaction of a few multi-row statements
   * however many entries there are: a region is seeded on its first request, and again after
   * every reset. Nodes sharing a database may seed a region at once: rows another node wrote
   * first are the same rows, and are left as they are.
   */
  async function seed(region: string) {
    const wanted = entries.map((entry) => ({ entry, imageId: derivedId("ami", region, entry.name), snapshotId: derivedId("snap", region, entry.name) }));
    const present = await readInBatches(
      wanted.map((w) => w.imageId),
      (ids) => db.selectFrom("images").select("image_id").where("image_id", "in", ids).execute(),
    );
    const seededIds = new Set(present.map((row) => row.image_id));
    const missing = wanted.filter((w) => !seededIds.has(w.imageId));
    if (missing.length === 0) return;
    const rootChunk = await chunks.put(rootBlock());
    await db.transaction().execute(async (tx) => {
      const snapshots = missing.map(({ entry, snapshotId }): Insertable<SnapshotTable> => ({
        account_id: entry.ownerId, region, snapshot_id: snapshotId, volume_id: "vol-ffffffff", volume_size: entry.volumeSize,
        state: "completed", progress: "100%", start_time: entry.creationDate, description: entry.description, encrypted: 0,
        kms_key_id: null, parent_snapshot_id: null, client_token: null, next_state: null, next_state_at: null,
      }));
      await insertInBatches(snapshots, (rows) => tx.insertInto("snapshots").values(rows).onConflict((oc) => oc.doNothing()).execute());
      const blocks = missing.map(({ snapshotId }) => ({ snapshot_id: snapshotId, block_index: 0, chunk: rootChunk, written: 1 }));
      await insertInBatches(blocks, (rows) => tx.insertInto("snapshot_blocks").values(rows).onConflict((oc) => oc.doNothing()).execute());
      const images = missing.map(({ entry, imageId }): Insertable<ImageTable> => ({
        account_id: entry.ownerId, region, image_id: imageId, name: entry.name, description: entry.description,
        state: "available", next_state: null, next_state_at: null, state_reason_code: null, state_reason_message: null,
        architecture: entry.architecture, virtualization_type: "hvm", root_device_name: entry.rootDeviceName, root_device_type: "ebs",
        ena_support: entry.enaSupport ? 1 : 0, sriov_net_support: "simple", boot_mode: entry.bootMode ?? null, tpm_support: null,
        imds_support: entry.imdsSupport ?? null, platform: entry.platform ?? null, creation_date: entry.creationDate,
        deprecation_time: entry.deprecationTime ?? null, public: 1, owner_alias: entry.ownerAlias ?? null, client_token: null,
        source_instance_id: null, kernel_id: null, ramdisk_id: null,
      }));
      await insertInBatches(images, (rows) => tx.insertInto("images").values(rows).onConflict((oc) => oc.doNothing()).execute());
      const devices = missing.map(({ entry, imageId, snapshotId }) => ({
        image_id: imageId, position: 0, device_name: entry.rootDeviceName, virtual_name: null, no_device: 0, snapshot_id: snapshotId,
        volume_size: entry.volumeSize, volume_type: "gp3", delete_on_termination: 1, encrypted: 0, iops: null, throughput: null, kms_key_id: null,
      }));
      await insertInBatches(devices, (rows) => tx.insertInto("image_block_devices").values(rows).onConflict((oc) => oc.doNothing()).execute());
      const permissions = missing.map(({ imageId }) => ({ image_id: imageId, grantee: "all" }));
      await insertInBatches(permissions, (rows) => tx.insertInto("image_launch_permissions").values(rows).onConflict((oc) => oc.doNothing()).execute());
    });
  }
  return {
    ensure(region) {
      let done = seeded.get(region);
      if (!done) {
        done = seed(region).catch((error: unknown) => {
          seeded.delete(region);
          throw error;
        });
        seeded.set(region, done);
      }
      return done;
    },
    forget: () => seeded.clear(),
  };
}
