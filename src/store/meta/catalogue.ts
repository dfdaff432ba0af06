// Seeds the public catalogue into a region on first use. Image ids are pinned by the operator
// or derived from the region and the image name, so every Kiln gives a catalogue image the same
// id. A stand-in's root snapshot is one block, the same bytes for every image in every region,
// so the chunk store keeps it once; an entry with a root disk reads the disk once, and every
// region's snapshot names the same chunks.
import { stat } from "node:fs/promises";
import { derivedId, EVERY_REGION, imageIdIn, type CatalogueEntry, type PublicCatalogue } from "../../domain/catalogue.js";
import { DiskImageError } from "../../formats/disk/errors.js";
import { openDisks } from "../../formats/disk/open.js";
import { fileSource } from "../../formats/disk/source.js";
import { writeDiskToSnapshot } from "../blocks/disk-writer.js";
import { BLOCK_SIZE, type ChunkStore } from "../blocks/chunks.js";
import type { Logger } from "../../log.js";
import { insertInBatches, readInBatches } from "./batches.js";
import type { MetaDb } from "./database.js";
import { atomically } from "./database.js";
import type { BlockRow } from "./manifests.js";
import { newBlockDeviceRow, newImageRow } from "./images.js";
import { newSnapshotRow } from "./snapshots.js";

const GIB = 1024 ** 3;

/**
 * The first block of every stand-in's root disk: a boot signature and a line that says what it
 * is. One block for them all: seeding a region (on its first request, and after every reset)
 * stores it once, not once an image.
 */
function standInBlock(): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  block.write("Kiln catalogue image: a public image's stand-in, with no operating system\n", 0, "utf8");
  block[510] = 0x55;
  block[511] = 0xaa;
  return block;
}

/** A root disk's data as chunks, and the volume it needs. */
interface RootData {
  blocks: readonly BlockRow[];
  volumeSize: number;
}

async function openRootDisk(path: string) {
  const source = await fileSource(path).catch((error: NodeJS.ErrnoException) => {
    throw new Error(`the catalogue's root disk ${path} cannot be read: ${error.code ?? error.message}`);
  });
  try {
    const disks = await openDisks(source, undefined);
    if (disks.length !== 1) throw new DiskImageError(`it holds ${disks.length} disks, not one`);
    return { source, disk: disks[0]! };
  } catch (error) {
    await source.close();
    if (error instanceof DiskImageError) throw new Error(`the catalogue's root disk ${path} is not a disk image Kiln reads: ${error.message}`);
    throw error;
  }
}

/** Opens every root disk the catalogue names, so a missing or unreadable one stops Kiln before it starts. */
export async function checkRootDisks(publicCatalogue: PublicCatalogue): Promise<void> {
  for (const path of new Set(publicCatalogue.entries.flatMap((e) => (e.rootDisk ? [e.rootDisk] : [])))) {
    const { source } = await openRootDisk(path);
    await source.close();
  }
}

export interface Catalogue {
  ensure(region: string): Promise<void>;
  /** Forget which regions are seeded (after /_kiln/reset). */
  forget(): void;
}

export function catalogue(db: MetaDb, chunks: ChunkStore, publicCatalogue: PublicCatalogue, log?: Logger): Catalogue {
  const { entries } = publicCatalogue;
  // Images pinned to one id everywhere are one row each, in EVERY_REGION; the others, one per region.
  const everywhere = entries.filter((e) => typeof e.imageId === "string");
  const regional = entries.filter((e) => typeof e.imageId !== "string");
  const seeded = new Map<string, Promise<void>>();
  /** Root disks read so far, by path: the first region to need one writes it, later ones reuse its chunks. */
  const rootDisks = new Map<string, Promise<RootData>>();
  /** What a root snapshot's id derives from: its image and its disk file as it is now (a new file, a new snapshot). */
  const rootKeys = new Map<string, string>();

  async function rootKeyOf(entry: CatalogueEntry): Promise<string> {
    if (!entry.rootDisk) return entry.name;
    let key = rootKeys.get(entry.rootDisk);
    if (!key) {
      const { size, mtimeMs } = await stat(entry.rootDisk);
      key = `${entry.name}\0${entry.rootDisk}\0${size}\0${mtimeMs}`;
      rootKeys.set(entry.rootDisk, key);
    }
    return key;
  }

  /** Writes the disk into `snapshotId` (once per file; later snapshots copy the first one's rows). */
  async function rootData(path: string, snapshotId: string): Promise<RootData> {
    let data = rootDisks.get(path);
    if (!data) {
      data = (async () => {
        const { source, disk } = await openRootDisk(path);
        try {
          await writeDiskToSnapshot({ db, chunks }, disk.image.extents(), snapshotId);
        } finally {
          await source.close();
        }
        const blocks = await db
          .selectFrom("snapshot_blocks")
          .select(["block_index", "chunk"])
          .where("snapshot_id", "=", snapshotId)
          .orderBy("block_index")
          .execute();
        return { blocks, volumeSize: Math.max(1, Math.ceil(disk.image.virtualSize / GIB)) };
      })();
      rootDisks.set(path, data);
      data.catch(() => rootDisks.delete(path));
    }
    return data;
  }

  /**
   * The region's missing catalogue images, in one transaction of a few multi-row statements
   * however many entries there are: a region is seeded on its first request, and again after
   * every reset. Nodes sharing a database may seed a region at once: rows another node wrote
   * first are the same rows, and are left as they are. An image whose root disk changed gets a
   * new root snapshot; rows of a catalogue name whose id the catalogue no longer gives go.
   */
  async function seed(region: string) {
    const wanted = await Promise.all(
      (region === EVERY_REGION ? everywhere : regional).map(async (entry) => ({
        entry,
        imageId: imageIdIn(entry, region),
        snapshotId: derivedId("snap", region, await rootKeyOf(entry)),
      })),
    );
    const present = await readInBatches(
      wanted.map((w) => w.imageId),
      (ids) =>
        db
          .selectFrom("images")
          .leftJoin("image_block_devices", (join) =>
            join.onRef("image_block_devices.image_id", "=", "images.image_id").on("image_block_devices.position", "=", 0),
          )
          .select(["images.image_id", "images.account_id", "images.name", "image_block_devices.snapshot_id"])
          .where("images.image_id", "in", ids)
          .execute(),
    );
    // A pinned id another image already holds (one an account made or restored) stays that
    // image's: the catalogue entry is left out in this region, and said so.
    const wantedById = new Map(wanted.map((w) => [w.imageId, w.entry]));
    const isCatalogueRow = (row: { image_id: string; account_id: string; name: string }) =>
      wantedById.get(row.image_id)?.ownerId === row.account_id && wantedById.get(row.image_id)?.name === row.name;
    const others = new Map(present.filter((row) => !isCatalogueRow(row)).map((row) => [row.image_id, row]));
    for (const { entry, imageId } of wanted.filter((w) => others.has(w.imageId))) {
      log?.warn({ region, image: entry.name, imageId }, "a catalogue image's pinned id is another image's: the catalogue image is left out");
    }
    const rootOf = new Map(present.filter((row) => !others.has(row.image_id)).map((row) => [row.image_id, row.snapshot_id]));
    const missing = wanted.filter((w) => !others.has(w.imageId) && rootOf.get(w.imageId) !== w.snapshotId);
    const stale = await staleImages(
      region,
      wanted.map((w) => w.imageId),
    );
    if (missing.length === 0 && stale.length === 0) return;
    const standIn = await chunks.put(standInBlock());
    const roots = new Map<string, RootData>();
    for (const { entry, snapshotId } of missing) if (entry.rootDisk) roots.set(snapshotId, await rootData(entry.rootDisk, snapshotId));
    const volumeSizeOf = (entry: CatalogueEntry, snapshotId: string) => Math.max(entry.volumeSize ?? 1, roots.get(snapshotId)?.volumeSize ?? 1);
    await atomically(db, async (tx) => {
      if (stale.length) {
        await tx.deleteFrom("image_launch_permissions").where("image_id", "in", stale).execute();
        await tx.deleteFrom("image_block_devices").where("image_id", "in", stale).execute();
        await tx.deleteFrom("images").where("image_id", "in", stale).execute();
      }
      const snapshots = missing.map(({ entry, snapshotId }) =>
        newSnapshotRow({
          account_id: entry.ownerId,
          region,
          snapshot_id: snapshotId,
          volume_size: volumeSizeOf(entry, snapshotId),
          start_time: entry.creationDate,
          description: entry.description,
        }),
      );
      await insertInBatches(snapshots, (rows) =>
        tx
          .insertInto("snapshots")
          .values(rows)
          .onConflict((oc) => oc.doNothing())
          .execute(),
      );
      const blocks = missing.flatMap(({ snapshotId }) =>
        (roots.get(snapshotId)?.blocks ?? [{ block_index: 0, chunk: standIn }]).map((b) => ({
          snapshot_id: snapshotId,
          block_index: b.block_index,
          chunk: b.chunk,
          written: 1,
        })),
      );
      await insertInBatches(blocks, (rows) =>
        tx
          .insertInto("snapshot_blocks")
          .values(rows)
          .onConflict((oc) => oc.doNothing())
          .execute(),
      );
      const replaced = missing.filter((w) => rootOf.has(w.imageId));
      for (const { entry, imageId, snapshotId } of replaced) {
        await tx
          .updateTable("image_block_devices")
          .set({ snapshot_id: snapshotId, volume_size: volumeSizeOf(entry, snapshotId) })
          .where("image_id", "=", imageId)
          .where("position", "=", 0)
          .execute();
      }
      const added = missing.filter((w) => !rootOf.has(w.imageId));
      const images = added.map(({ entry, imageId }) =>
        newImageRow({
          account_id: entry.ownerId,
          region,
          image_id: imageId,
          name: entry.name,
          description: entry.description,
          architecture: entry.architecture,
          root_device_name: entry.rootDeviceName,
          ena_support: entry.enaSupport === false ? 0 : 1,
          sriov_net_support: "simple",
          boot_mode: entry.bootMode ?? null,
          imds_support: entry.imdsSupport ?? null,
          platform: entry.platform ?? null,
          platform_details: entry.platformDetails ?? null,
          usage_operation: entry.usageOperation ?? null,
          creation_date: entry.creationDate,
          deprecation_time: entry.deprecationTime ?? null,
          public: 1,
          owner_alias: entry.ownerAlias ?? null,
        }),
      );
      await insertInBatches(images, (rows) =>
        tx
          .insertInto("images")
          .values(rows)
          .onConflict((oc) => oc.doNothing())
          .execute(),
      );
      const devices = added.map(({ entry, imageId, snapshotId }) => ({
        image_id: imageId,
        position: 0,
        ...newBlockDeviceRow({
          device_name: entry.rootDeviceName,
          snapshot_id: snapshotId,
          volume_size: volumeSizeOf(entry, snapshotId),
          volume_type: "gp3",
          delete_on_termination: 1,
          encrypted: 0,
        }),
      }));
      await insertInBatches(devices, (rows) =>
        tx
          .insertInto("image_block_devices")
          .values(rows)
          .onConflict((oc) => oc.doNothing())
          .execute(),
      );
      const permissions = added.map(({ imageId }) => ({ image_id: imageId, grantee: "all" }));
      await insertInBatches(permissions, (rows) =>
        tx
          .insertInto("image_launch_permissions")
          .values(rows)
          .onConflict((oc) => oc.doNothing())
          .execute(),
      );
    });
  }

  /** Images a publisher holds under a catalogue name with an id the catalogue no longer gives (a pin added or changed since). */
  async function staleImages(region: string, ids: readonly string[]): Promise<string[]> {
    const owners = [...new Set(entries.map((e) => e.ownerId))];
    const names = new Set(entries.map((e) => e.name));
    const current = new Set(ids);
    const held = await db.selectFrom("images").select(["image_id", "name"]).where("region", "=", region).where("account_id", "in", owners).execute();
    return held.filter((row) => names.has(row.name) && !current.has(row.image_id)).map((row) => row.image_id);
  }

  function once(region: string): Promise<void> {
    let done = seeded.get(region);
    if (!done) {
      done = seed(region).catch((error: unknown) => {
        seeded.delete(region);
        throw error;
      });
      seeded.set(region, done);
    }
    return done;
  }

  return {
    async ensure(region) {
      await Promise.all([once(EVERY_REGION), once(region)]);
    },
    forget: () => seeded.clear(),
  };
}
