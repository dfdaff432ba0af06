// Request bodies read with a ceiling: a declared length over it is refused before a byte is
// read, and a chunked body is cut off as soon as it passes it.
import type { IncomingMessage } from "node:http";
import { ApiError } from "../protocol/errors.js";

const tooLarge = (limit: number) => new ApiError("RequestEntityTooLarge", `The request body is larger than the ${limit} bytes Kiln accepts for this API.`);

export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  // Events rather than `for await`: this runs on every request, and the async iterator costs more.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off("data", onData);
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    req.on("data", onData);
    req.once("end", () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.once("error", reject);
  });
}
