// Inflating runs of small deflate streams (VMDK's compressed grains, QCOW2's compressed clusters)
// on the worker pool. node:zlib's async inflate also runs off the main thread, but each call
// builds a stream object and makes several trips through the event loop: for 64 KiB units that
// bookkeeping costs the main thread more than inflating costs the thread pool. Here a worker
// takes a whole run of units (a few MiB) per job and inflates them with the sync API.
import { constants, inflateRawSync, inflateSync } from "node:zlib";
import type { Handled, InflateRequest, InflateResult } from "../../workers/jobs.js";
import { releaserOf, takeExtentBuffer } from "./extent-slots.js";
import { BufferSlots, runJob } from "../../workers/pool.js";

export interface Inflated {
  /** Every stream's output, back to back, in a slot lent to the caller. */
  output: Buffer;
  lengths: number[];
  /** Gives the output's slot back for another run (once nothing reads `output` any more). */
  release(): void;
}

/** Why a stream did not inflate. */
export class InflateFailure extends Error {
  constructor(
    readonly index: number,
    readonly tooLarge: boolean,
    message: string,
  ) {
    super(message);
  }
}

export function inflateJob({ input, length, pieces, maxOutput, raw, output: outputSlot }: InflateRequest): Handled<InflateResult> {
  const count = pieces.length / 2;
  const output = Buffer.from(outputSlot);
  const lengths: number[] = [];
  const options = raw
    ? { maxOutputLength: maxOutput, chunkSize: maxOutput, finishFlush: constants.Z_SYNC_FLUSH }
    : { maxOutputLength: maxOutput, chunkSize: maxOutput + 512 };
  let at = 0;
  for (let i = 0; i < count; i++) {
    const start = pieces[2 * i]!;
    const size = pieces[2 * i + 1]!;
    if (start + size > length)
      return { result: { output: outputSlot, index: i, tooLarge: false, message: "the stream lies outside the input" }, transfer: [outputSlot] };
    const stream = Buffer.from(input, start, size);
    let inflated: Buffer;
    try {
      inflated = raw ? inflateRawSync(stream, options) : inflateSync(stream, options);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      return { result: { output: outputSlot, index: i, tooLarge: code === "ERR_BUFFER_TOO_LARGE", message: (error as Error).message }, transfer: [outputSlot] };
    }
    inflated.copy(output, at);
    at += inflated.length;
    lengths.push(inflated.length);
  }
  return { result: { output: outputSlot, lengths }, transfer: [outputSlot] };
}

/** A run's compressed bytes: at most a read of grains or clusters (8 MiB) and one unit past it. */
const INPUT_SLOT_BYTES = 12 * 1024 * 1024;
// Inputs are back as soon as the run is inflated; outputs (extent slots) once the consumer has
// stored them. Slots are touched only as far as runs fill them, so unused tails cost no memory.
const inputSlots = new BufferSlots(INPUT_SLOT_BYTES, { kind: "shared", limit: 4, keep: 4 });

/**
 * Inflates each stream `pieces[2i]..+pieces[2i+1]` of `input` to at most `maxOutput` bytes, on a
 * pool worker; throws InflateFailure for the first stream that does not inflate.
 */
export async function inflatePieces(input: Buffer, pieces: number[], maxOutput: number, raw = false): Promise<Inflated> {
  const slot = await takeExtentBuffer((pieces.length / 2) * maxOutput);
  const inflate = async (inputSlot: Buffer) => {
    input.copy(inputSlot);
    const request = { input: inputSlot.buffer as SharedArrayBuffer, length: input.length, pieces, maxOutput, raw, output: slot.buffer as ArrayBuffer };
    return runJob("inflate", request, [request.output]);
  };
  const result = input.length <= INPUT_SLOT_BYTES ? await inputSlots.with(inflate) : await inflate(Buffer.from(new SharedArrayBuffer(input.length)));
  const output = Buffer.from(result.output);
  const release = releaserOf(output);
  if ("index" in result) {
    release();
    throw new InflateFailure(result.index, result.tooLarge, result.message);
  }
  const produced = result.lengths.reduce((sum, length) => sum + length, 0);
  return { output: output.subarray(0, produced), lengths: result.lengths, release };
}
