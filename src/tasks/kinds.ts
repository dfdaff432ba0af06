// Every kind of durable task Kiln runs, by the name its rows carry: what a TaskRunner is given.
import type { ChunkStore } from "../store/blocks/chunks.js";
import type { MetaDb } from "../store/meta/database.js";
import type { BlobStore } from "../store/objects/blobs.js";
import { EXPORT_IMAGE_TASK, exportImageKind } from "./export-image.js";
import { importKinds } from "./import-disks.js";
import { RESTORE_TASK, restoreImageKind } from "./restore-image.js";
import type { TaskKind } from "./runner.js";
import { STORE_TASK, storeImageKind } from "./store-image.js";

export function taskKinds(deps: { db: MetaDb; chunks: ChunkStore; blobs: BlobStore }): Record<string, TaskKind> {
  return { [STORE_TASK]: storeImageKind(deps), [RESTORE_TASK]: restoreImageKind(deps), ...importKinds(deps), [EXPORT_IMAGE_TASK]: exportImageKind(deps) };
}
