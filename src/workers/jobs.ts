// The jobs the worker threads run, by kind: each kind's request and result, and the handler
// (in the module that owns the work) that a worker calls.
import type { InflateRequest, InflateResult } from "../formats/disk/inflate.js";
import type { ParseXmlRequest, ParseXmlResult } from "../protocol/xml.js";
import type { HashBlockRequest, HashBlockResult } from "../store/blocks/hash-block.js";

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
