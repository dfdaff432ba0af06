// Data folders written before pack files held each chunk as its own file, chunks/ab/cd/<sha256>.
// At start those files are put into packs (each checked against its name) and removed, so an
// upgrade keeps every snapshot's data; a stop halfway is finished by the next start (a chunk put
// again is stored once). A file that does not match its name is left where it is, and logged.
import { createHash } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../../log.js";
import { listDir } from "../list-dir.js";
import { BLOCK_SIZE, type ChunkStore } from "./chunks.js";

const CHUNK_FILE = /^[0-9a-f]{64}$/;
const AT_ONCE = 8;

export async function adoptChunkFiles(folder: string, chunks: ChunkStore, logger: Logger): Promise<number> {
  const files = chunkFiles(folder);
  let adopted = 0;
  let mismatched = 0;
  const adoptNext = async (): Promise<void> => {
    for (let next = await files.next(); !next.done; next = await files.next()) {
      const { path, name } = next.value;
      if (!CHUNK_FILE.test(name)) {
        // What an interrupted write left (name.<random>.tmp) was never a chunk.
        if (name.endsWith(".tmp")) await rm(path, { force: true });
        continue;
      }
      const data = await readFile(path);
      if (data.length !== BLOCK_SIZE || createHash("sha256").update(data).digest("hex") !== name) {
        logger.warn({ path }, "a chunk file does not hold the block its name says; left in place");
        mismatched++;
        continue;
      }
      await chunks.put(data);
      await rm(path);
      adopted++;
    }
  };
  await Promise.all(Array.from({ length: AT_ONCE }, adoptNext));
  if (adopted > 0 || mismatched > 0) logger.info({ adopted, mismatched }, "moved chunk files into packs");
  if (mismatched === 0) await rm(folder, { recursive: true, force: true });
  return adopted;
}

async function* chunkFiles(folder: string): AsyncGenerator<{ path: string; name: string }> {
  for (const first of await listDir(folder)) {
    for (const second of await listDir(join(folder, first))) {
      for (const name of await listDir(join(folder, first, second))) yield { path: join(folder, first, second, name), name };
    }
  }
}
