// Request bodies read with a ceiling: a declared length over it is refused before a byte is
// read, and a chunked body is cut off as soon as it passes it.
import type { IncomingMessage } from "node:http";
import { ApiError } from "../protocol/errors.js";

const tooLarge = (limit: number) =>
  new ApiError("RequestEntityTooLarge", `The request body is larger than the ${limit} bytes Kiln accepts for this API.`);

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge(limit);
    chunks.push(chunk);
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
}
