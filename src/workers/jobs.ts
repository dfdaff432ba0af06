// The jobs the worker threads run, by kind: each kind's request and result, and the handler
// (in the module that owns the work) that a worker calls. The shapes live here, so that the
// modules that do the work and the pool that carries it both import this file, and it imports
// neither.

/** Inflating a grain's or cluster's deflate streams (formats/disk/inflate.ts). */
export interface InflateRequest {
  /** The streams' bytes: the first `length` bytes of a shared buffer the caller reuses. */
  input: SharedArrayBuffer;
  length: number;
  /** [start, length] of each stream in `input`. */
  pieces: number[];
  /** The most bytes one stream may produce: more is a deflate bomb, stopped right there. */
  maxOutput: number;
  /** Where the streams' output goes, back to back (at least streams × maxOutput bytes): moved
   * to the worker, and back with the result. */
  output: ArrayBuffer;
  /**
   * Raw deflate (no zlib header) that may run on past its last block without a final one, as
   * QCOW2 writes it ("decompression stops when it has produced a cluster of data").
   */
  raw: boolean;
}

export type InflateResult = { output: ArrayBuffer } /** The bytes each stream produced. */ & (
  | { lengths: number[] }
  /** Stream `index` produced more than maxOutput (`tooLarge`), or is not deflate data. */
  | { index: number; tooLarge: boolean; message: string }
);

/** Parsing a large XML request document (protocol/xml.ts). */
export interface ParseXmlRequest {
  dialect: "ec2" | "s3";
  text: string;
}

export interface ParseXmlResult {
  json: string;
}

/** Hashing a block into its chunk id (store/blocks/hash-block.ts). */
export interface HashBlockRequest {
  /** The block: `length` bytes at `offset` of a shared slot the caller lends for the job. */
  block: SharedArrayBuffer;
  offset: number;
  length: number;
}

export interface HashBlockResult {
  chunk: string;
}

export interface Jobs {
  inflate: { request: InflateRequest; result: InflateResult };
  "hash-block": { request: HashBlockRequest; result: HashBlockResult };
  "parse-xml": { request: ParseXmlRequest; result: ParseXmlResult };
}

export type JobKind = keyof Jobs;
export type JobRequest<K extends JobKind> = Jobs[K]["request"];
export type JobResult<K extends JobKind> = Jobs[K]["result"];

/** What a handler gives back: its result, and the buffers in it to move (not copy) to the caller. */
export interface Handled<R> {
  result: R;
  transfer?: ArrayBuffer[];
}

export type Handler<K extends JobKind> = (request: JobRequest<K>) => Handled<JobResult<K>> | Promise<Handled<JobResult<K>>>;
