// Seeds the public catalogue into a region on first use. Ids are derived from the region and
// the image name, so every Kiln gives a catalogue image the same id; the root snapshot's one
// block is the same bytes in every region, so the chunk store keeps it once.
import { createHash } from "node:crypto";
import type { CatalogueEntry } from "../../domain/catalogue.js";
import { BLOCK_SIZE, type ChunkStore } from "../blocks/chunks.js";
import { isUniqueViolation, type MetaDb } from "./database.js";

const derivedId = (prefix: string, region: string, name: string) => `${prefix}-${createHash("sha256").update(`${region}\0${name}`).digest("hex").slice(0, 17)}`;

/** The first block of a catalogue image's root disk: a boot signature and the image's name. */
function rootBlock(entry: CatalogueEntry): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  block.write(`Kiln catalogue image: ${entry.name}\n`, 0, "utf8");
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
  async function seed(region: string) {
    for (const entry of entries) {
      const imageId = derivedId("ami", region, entry.name);
      const exists = await db.selectFrom("images").select("image_id").where("image_id", "=", imageId).executeTakeFirst();
      if (exists) continue;
      const snapshotId = derivedId("snap", region, entry.name);
      const chunk = await chunks.put(rootBlock(entry));
      // Nodes sharing a database may seed a region at once: the first to commit wins.
      await db.transaction().execute(async (tx) => {
        await tx.insertInto("snapshots").values({
          account_id: entry.ownerId, region, snapshot_id: snapshotId, volume_id: "vol-ffffffff", volume_size: entry.volumeSize,
          state: "completed", progress: "100%", start_time: entry.creationDate, description: entry.description, encrypted: 0,
          kms_key_id: null, parent_snapshot_id: null, client_token: null, next_state: null, next_state_at: null,
        }).execute();
        await tx.insertInto("snapshot_blocks").values({ snapshot_id: snapshotId, block_index: 0, chunk, written: 1 }).execute();
        await tx.insertInto("images").values({
          account_id: entry.ownerId, region, image_id: imageId, name: entry.name, description: entry.description,
          state: "available", next_state: null, next_state_at: null, state_reason_code: null, state_reason_message: null,
          architecture: entry.architecture, virtualization_type: "hvm", root_device_name: entry.rootDeviceName, root_device_type: "ebs",
          ena_support: entry.enaSupport ? 1 : 0, sriov_net_support: "simple", boot_mode: entry.bootMode ?? null, tpm_support: null,
          imds_support: entry.imdsSupport ?? null, platform: entry.platform ?? null, creation_date: entry.creationDate,
          deprecation_time: entry.deprecationTime ?? null, public: 1, owner_alias: entry.ownerAlias ?? null, client_token: null,
          source_instance_id: null, kernel_id: null, ramdisk_id: null,
        }).execute();
        await tx.insertInto("image_block_devices").values({
          image_id: imageId, position: 0, device_name: entry.rootDeviceName, virtual_name: null, no_device: 0, snapshot_id: snapshotId,
          volume_size: entry.volumeSize, volume_type: "gp3", delete_on_termination: 1, encrypted: 0, iops: null, throughput: null, kms_key_id: null,
        }).execute();
        await tx.insertInto("image_launch_permissions").values({ image_id: imageId, grantee: "all" }).execute();
      }).catch((error: unknown) => {
        if (!isUniqueViolation(error)) throw error;
      });
    }
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
