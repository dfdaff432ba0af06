// Inflates runs of small zlib streams (VMDK's compressed grains) on worker threads. node:zlib's
// async inflate also runs off the main thread, but each call builds a stream object and makes
// several round trips through the event loop: for 64 KiB grains of incompressible data that
// bookkeeping costs the main thread more than inflating costs the thread pool. Here a worker
// takes a whole run of grains (a few MiB) per message and inflates them with the sync API,
// so the main thread only reads the file and posts one message per run.
import { availableParallelism } from "node:os";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { inflateSync } from "node:zlib";

export interface Inflated {
  /** Every stream's output, back to back. */
  output: Buffer;
  /** Bytes each stream produced. */
  lengths: number[];
}

/** Why a stream did not inflate: it produced more than `maxOutput` ("too-large"), or is not zlib data. */
export class InflateFailure extends Error {
  constructor(
    readonly index: number,
    readonly tooLarge: boolean,
    message: string,
  ) {
    super(message);
  }
}

interface Request {
  id: number;
  /** The streams' bytes: the first `length` bytes of a shared buffer the caller reuses. */
  input: SharedArrayBuffer;
  length: number;
  /** [start, length] of each stream in `input`. */
  pieces: number[];
  maxOutput: number;
}

type Reply = { id: number; output: Uint8Array; lengths: number[] } | { id: number; index: number; tooLarge: boolean; message: string };

const IS_POOL_WORKER = "kiln-inflate-pool";

if (!isMainThread && workerData === IS_POOL_WORKER) {
  parentPort!.on("message", (request: Request) => parentPort!.postMessage(...serve(request)));
}

function serve({ id, input, length, pieces, maxOutput }: Request): [Reply, ArrayBuffer[]] {
  const count = pieces.length / 2;
  // Sized by the caller's bound (streams × maxOutput, a few MiB), never by the data.
  const output = Buffer.allocUnsafeSlow(count * maxOutput);
  const lengths: number[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const start = pieces[2 * i]!;
    const size = pieces[2 * i + 1]!;
    if (start + size > length) return [{ id, index: i, tooLarge: false, message: "the stream lies outside the input" }, []];
    const stream = Buffer.from(input, start, size);
    let inflated: Buffer;
    try {
      // maxOutputLength stops a deflate bomb after one unit's worth of output.
      inflated = inflateSync(stream, { maxOutputLength: maxOutput, chunkSize: maxOutput + 512 });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return [{ id, index: i, tooLarge: code === "ERR_BUFFER_TOO_LARGE", message: (error as Error).message }, []];
    }
    inflated.copy(output, at);
    at += inflated.length;
    lengths.push(inflated.length);
  }
  return [{ id, output: output.subarray(0, at), lengths }, [output.buffer as ArrayBuffer]];
}

interface Lane {
  worker: Worker;
  pending: Map<number, { resolve(value: Inflated): void; reject(error: Error): void }>;
}

const lanes: Lane[] = [];
const spare: SharedArrayBuffer[] = [];
let nextId = 0;

function startLane(): Lane {
  const worker = new Worker(new URL(import.meta.url), { workerData: IS_POOL_WORKER });
  const lane: Lane = { worker, pending: new Map() };
  worker.on("message", (reply: Reply) => {
    const waiter = lane.pending.get(reply.id);
    lane.pending.delete(reply.id);
    if (lane.pending.size === 0) {
      worker.unref();
      // Nothing left to inflate anywhere: give the input buffers back rather than hold them.
      if (lanes.every((other) => other.pending.size === 0)) spare.length = 0;
    }
    if (!waiter) return;
    if ("output" in reply) waiter.resolve({ output: Buffer.from(reply.output.buffer, reply.output.byteOffset, reply.output.byteLength), lengths: reply.lengths });
    else waiter.reject(new InflateFailure(reply.index, reply.tooLarge, reply.message));
  });
  const fail = (error: Error) => {
    const index = lanes.indexOf(lane);
    if (index >= 0) lanes.splice(index, 1);
    for (const waiter of lane.pending.values()) waiter.reject(error);
    lane.pending.clear();
  };
  worker.on("error", fail);
  worker.on("exit", (code) => fail(new Error(`an inflate worker exited (code ${code})`)));
  // An idle worker must not keep the process alive; a busy one must, or a caller awaiting it
  // could see the process exit under it. (After the listeners: adding one refs the worker again.)
  worker.unref();
  return lane;
}

// Input buffers, shared with the workers and reused while runs keep coming: a fresh multi-MiB
// buffer per run would cost the main thread a page fault per 4 KiB as the run is copied in.
const MAX_SPARE = 6;
const MIN_INPUT_BYTES = 5 * 1024 * 1024;

/**
 * Inflates each zlib stream `pieces[2i]..+pieces[2i+1]` of `input` to at most `maxOutput` bytes,
 * on the least busy of a few workers. `input` is copied (it may be a view of the caller's data).
 */
export function inflatePieces(input: Buffer, pieces: number[], maxOutput: number): Promise<Inflated> {
  if (lanes.length < Math.min(4, Math.max(1, availableParallelism()))) lanes.push(startLane());
  const lane = lanes.reduce((best, lane) => (lane.pending.size < best.pending.size ? lane : best));
  const id = nextId++;
  const spareAt = spare.findIndex((shared) => shared.byteLength >= input.length);
  const shared = spareAt >= 0 ? spare.splice(spareAt, 1)[0]! : new SharedArrayBuffer(Math.max(MIN_INPUT_BYTES, input.length));
  input.copy(Buffer.from(shared));
  const release = () => {
    if (spare.length < MAX_SPARE) spare.push(shared);
  };
  return new Promise<Inflated>((resolve, reject) => {
    lane.pending.set(id, {
      resolve: (value) => (release(), resolve(value)),
      reject: (error) => (release(), reject(error)),
    });
    lane.worker.ref();
    lane.worker.postMessage({ id, input: shared, length: input.length, pieces, maxOutput } satisfies Request);
  });
}
