// SQLite's checkpoints, off the event loop. In WAL mode, committed pages go to the write-ahead log
// and a checkpoint copies them back into the database file (and syncs it). By default the
// connection whose commit takes the log past 1,000 pages runs that checkpoint itself, inside the
// commit: Kiln's one connection runs synchronously on the event loop, so a large transaction's
// commit held every other request for the copy and the sync (80 of a 120 ms commit, for the rows
// of a CreateTags of 1,000 resources × 50 tags). Kiln's connection checkpoints only when it closes
// (wal_autocheckpoint = 0); this worker thread's own connection checkpoints every few hundred
// milliseconds, PASSIVE: beside the writer and its readers, never waiting on them.
import SQLite from "better-sqlite3";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

const INTERVAL_MS = 500;

export interface Checkpoints {
  stop(): Promise<void>;
}

/** Checkpoints the database `file` (opened in WAL mode by Kiln's connection) until stopped. */
export function startCheckpoints(file: string): Checkpoints {
  const worker = new Worker(new URL(import.meta.url), { workerData: { file } });
  const exited = new Promise((resolve) => worker.once("exit", resolve));
  // A failing checkpointer costs a log that grows until Kiln's connection closes: not worth a crash.
  worker.on("error", () => {});
  // After the listeners (adding one refs the worker again): it keeps no process alive.
  worker.unref();
  return {
    async stop() {
      // Kept alive until it has closed its connection, whatever else is left to wait for.
      worker.ref();
      worker.postMessage("stop");
      await exited;
    },
  };
}

function checkpointEvery(file: string): void {
  const db = new SQLite(file);
  const timer = setInterval(() => {
    try {
      db.pragma("wal_checkpoint(PASSIVE)");
    } catch {
      // Busy (another process recovering the log, say): the next round tries again.
    }
  }, INTERVAL_MS);
  parentPort!.once("message", () => {
    clearInterval(timer);
    db.close();
    parentPort!.close();
  });
}

if (!isMainThread && (workerData as { file?: string } | undefined)?.file) checkpointEvery((workerData as { file: string }).file);
