// A few worker threads for the CPU-heavy steps of moving disk data: inflating compressed grains
// and clusters, and hashing snapshot blocks; and for parsing large XML request documents. Done on the main thread, that work (and
// the garbage its buffers leave) would compete with reading the next extents and with serving
// requests; here the main thread only posts one message per job. Jobs carry their bytes in
// buffers the caller reuses (shared with the worker, or moved there and back), so nothing is
// allocated per job.
//
// The pool starts its workers on first use. An idle worker does not keep the process alive; a
// busy one does, so a caller awaiting a job never sees the process exit under it.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import type { JobKind, JobRequest, JobResult } from "./jobs.js";

interface Pending {
  resolve(value: unknown): void;
  reject(error: Error): void;
}

interface Lane {
  worker: Worker;
  pending: Map<number, Pending>;
}

type Reply = { id: number; result: unknown } | { id: number; error: string; code?: string };

/** Workers in the pool: one per core, at most four (jobs are short; more would only cost memory). */
const LANES = Math.min(4, Math.max(1, availableParallelism()));

const lanes: Lane[] = [];
let nextId = 0;

function startLane(): Lane {
  // Inflating allocates a buffer per grain; a small young generation collects them every few
  // MiB rather than every few tens, which keeps the workers' share of an import's memory small.
  const worker = new Worker(new URL("./worker.js", import.meta.url), { resourceLimits: { maxYoungGenerationSizeMb: 2 } });
  const lane: Lane = { worker, pending: new Map() };
  worker.on("message", (reply: Reply) => {
    const waiter = lane.pending.get(reply.id);
    lane.pending.delete(reply.id);
    if (lane.pending.size === 0) worker.unref();
    if (!waiter) return;
    if ("error" in reply) waiter.reject(Object.assign(new Error(reply.error), reply.code ? { code: reply.code } : {}));
    else waiter.resolve(reply.result);
  });
  const fail = (error: Error) => {
    const index = lanes.indexOf(lane);
    if (index >= 0) lanes.splice(index, 1);
    for (const waiter of lane.pending.values()) waiter.reject(error);
    lane.pending.clear();
  };
  worker.on("error", fail);
  worker.on("exit", (code) => fail(new Error(`a worker thread exited (code ${code})`)));
  // After the listeners: adding one refs the worker again.
  worker.unref();
  return lane;
}

/** Runs a job on the least busy worker; `transfer` names buffers in the request to move there. */
export function runJob<K extends JobKind>(kind: K, request: JobRequest<K>, transfer: ArrayBuffer[] = []): Promise<JobResult<K>> {
  if (lanes.length < LANES) lanes.push(startLane());
  const lane = lanes.reduce((best, lane) => (lane.pending.size < best.pending.size ? lane : best));
  const id = nextId++;
  return new Promise<JobResult<K>>((resolve, reject) => {
    lane.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
    lane.worker.ref();
    lane.worker.postMessage({ id, kind, request }, transfer);
  });
}

const IDLE_SLOTS_MS = 2000;
const WASM_PAGE = 64 * 1024;

/**
 * Fixed-size buffers lent out and given back, so a long import allocates no memory per job or
 * extent and leaves no garbage behind. Of the kinds: `shared` slots (SharedArrayBuffers) can be
 * read by a worker while the caller waits; `aligned` ones are shared too, and start on a page
 * boundary, as writes that bypass the page cache (O_DIRECT) need; `plain` ones can be moved to a
 * worker and back, and one never given back is garbage collected like any buffer (V8 counts plain
 * buffers towards its collections, not shared ones). With a `limit`, a caller waits for a slot
 * once that many are out. At most `keep` free slots are kept, and none once they have been idle
 * for a while.
 */
export class BufferSlots {
  private readonly free: Buffer[] = [];
  private readonly waiting: ((slot: Buffer) => void)[] = [];
  private out = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  /** Aligned slots are cut, in order, from one WebAssembly memory (page-aligned by definition). */
  private arena: { buffer: SharedArrayBuffer; cut: number } | undefined;

  constructor(
    readonly slotBytes: number,
    private readonly options: { kind: "plain" | "shared" | "aligned"; limit?: number; keep: number },
  ) {
    if (options.kind === "aligned" && (options.limit === undefined || options.keep < options.limit)) {
      throw new Error("aligned slots need a limit, and keep every slot");
    }
  }

  async take(): Promise<Buffer> {
    clearTimeout(this.idleTimer);
    if (this.options.limit !== undefined && this.out >= this.options.limit) {
      return new Promise((resolve) => this.waiting.push(resolve));
    }
    this.out++;
    return this.free.pop() ?? this.make();
  }

  private make(): Buffer {
    switch (this.options.kind) {
      case "plain":
        return Buffer.allocUnsafeSlow(this.slotBytes);
      case "shared":
        return Buffer.from(new SharedArrayBuffer(this.slotBytes));
      case "aligned": {
        const pages = Math.ceil((this.options.limit! * this.slotBytes) / WASM_PAGE);
        this.arena ??= { buffer: new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }).buffer as unknown as SharedArrayBuffer, cut: 0 };
        return Buffer.from(this.arena.buffer, this.slotBytes * this.arena.cut++, this.slotBytes);
      }
    }
  }

  give(slot: Buffer): void {
    const next = this.waiting.shift();
    if (next) {
      next(slot);
      return;
    }
    this.out--;
    if (this.free.length < this.options.keep) this.free.push(slot);
    // A busy pool keeps its slots (fresh ones would cost a page fault per 4 KiB as they are
    // filled); an idle one gives the memory back.
    if (this.out === 0) {
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => {
        this.free.length = 0;
        this.arena = undefined;
      }, IDLE_SLOTS_MS).unref();
    }
  }

  /** Lends a slot to `use` and takes it back however `use` ends. */
  async with<T>(use: (slot: Buffer) => Promise<T>): Promise<T> {
    const slot = await this.take();
    try {
      return await use(slot);
    } finally {
      this.give(slot);
    }
  }
}
