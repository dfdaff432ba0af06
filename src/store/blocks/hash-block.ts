// Naming a block: its SHA-256, computed on a pool worker, where hashing 512 KiB at a time does not
// take the main thread's time from reading the next extents and serving requests.
import { createHash } from "node:crypto";
import type { Handled, HashBlockRequest, HashBlockResult } from "../../workers/jobs.js";

export function hashBlockJob({ block, offset, length }: HashBlockRequest): Handled<HashBlockResult> {
  return {
    result: {
      chunk: createHash("sha256")
        .update(Buffer.from(block, offset, length))
        .digest("hex"),
    },
  };
}
