// A pool worker: runs each job it is sent with the handler for its kind, several at once when a
// handler waits on the file system, and answers with the result or the error's message.
import { parentPort } from "node:worker_threads";
import { inflateJob } from "../formats/disk/inflate.js";
import { parseXmlJob } from "../protocol/xml.js";
import { hashBlockJob } from "../store/blocks/hash-block.js";
import type { Handler, JobKind, JobRequest } from "./jobs.js";

const handlers: { [K in JobKind]: Handler<K> } = { inflate: inflateJob, "hash-block": hashBlockJob, "parse-xml": parseXmlJob };

parentPort!.on("message", async ({ id, kind, request }: { id: number; kind: JobKind; request: JobRequest<JobKind> }) => {
  try {
    const { result, transfer } = await (handlers[kind] as Handler<JobKind>)(request);
    parentPort!.postMessage({ id, result }, transfer ?? []);
  } catch (error) {
    const { message, code } = error as NodeJS.ErrnoException;
    parentPort!.postMessage({ id, error: message ?? String(error), code });
  }
});
