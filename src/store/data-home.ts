// Where snapshot data and bucket objects live: the data folder (the embedded default), or a
// bucket of an S3-compatible object store when one is configured, for nodes that share no disk.
import { constants } from "node:fs";
import { access } from "node:fs/promises";
import { join } from "node:path";
import type { KilnConfig } from "../config.js";
import type { Logger } from "../log.js";
import { adoptChunkFiles } from "./blocks/adopt-chunk-files.js";
import { checkChunkHome, chunkStoreIn, type ChunkStore } from "./blocks/chunks.js";
import { packHome } from "./blocks/pack-home.js";
import type { MetaDb } from "./meta/database.js";
import type { BlobStore } from "./objects/blobs.js";
import { fileBlobStore } from "./objects/file-blobs.js";

export interface DataHome {
  chunks: ChunkStore;
  blobs: BlobStore;
  /** Resolves when the home can be reached and written; throws why not. */
  ping(): Promise<void>;
  /** What health reports of it. */
  describe: { kind: "folder"; path: string } | { kind: "object-store"; bucket: string; prefix: string; endpoint?: string };
}

export async function openDataHome(config: KilnConfig, db: MetaDb, logger: Logger): Promise<DataHome> {
  if (!config.objectStore) {
    const home = packHome(join(config.dataDir, "packs"), db);
    await checkChunkHome(db, home, `the data folder ${config.dataDir}`);
    const chunks = chunkStoreIn(db, home);
    await adoptChunkFiles(join(config.dataDir, "chunks"), chunks, logger);
    return {
      chunks,
      blobs: fileBlobStore(join(config.dataDir, "objects")),
      ping: () => access(config.dataDir, constants.W_OK),
      describe: { kind: "folder", path: config.dataDir },
    };
  }
  // Loaded only here: a Kiln on its data folder never loads the S3 client.
  const [{ ObjectStoreBucket }, { bucketHome }, { bucketBlobStore }] = await Promise.all([
    import("./bucket/bucket.js"),
    import("./blocks/bucket-home.js"),
    import("./objects/bucket-blobs.js"),
  ]);
  const settings = config.objectStore;
  const bucket = new ObjectStoreBucket(settings);
  try {
    await bucket.ping();
  } catch (error) {
    throw new Error(
      `cannot use bucket ${settings.bucket} of the object store${settings.endpoint ? ` at ${settings.endpoint}` : ""}: ${(error as Error).name} ${(error as Error).message}`,
    );
  }
  const home = bucketHome(bucket, db);
  await checkChunkHome(db, home, `bucket ${settings.bucket}`);
  return {
    chunks: chunkStoreIn(db, home),
    blobs: bucketBlobStore(bucket),
    ping: () => bucket.ping(),
    describe: { kind: "object-store", bucket: settings.bucket, prefix: settings.prefix, endpoint: settings.endpoint },
  };
}
