// A raw disk image: the disk's bytes and nothing else, exactly virtualSize of them. The holes are
// written out as slices of one shared block of zeros, so a mostly empty disk costs no memory, only
// the bytes on the wire.
import { DISK_LIMITS } from "../disk/image.js";
import { checkedBlocks, checkSize, zeros } from "./checked.js";
import { EXPORT_BLOCK, type DiskWriter } from "./writer.js";

export const writeRaw: DiskWriter = async function* (disk, signal) {
  signal?.throwIfAborted();
  const count = checkSize(disk, DISK_LIMITS.virtualSize, "raw image");
  let written = 0;
  // A hole may be terabytes: check for an abort between its pieces, not only between blocks.
  function* hole(until: number) {
    for (const piece of zeros(until - written)) {
      signal?.throwIfAborted();
      yield piece;
    }
    written = until;
  }
  for await (const { index, data } of checkedBlocks(disk, count, signal)) {
    yield* hole(index * EXPORT_BLOCK);
    yield data;
    written += data.length;
  }
  yield* hole(disk.virtualSize);
};
