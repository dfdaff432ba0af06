// A raw disk: the file is the disk. Read in large pieces; blocks of zeros are dropped later, by
// the block writer, since a raw file says nothing about where its holes are.
import { DiskImageError } from "./errors.js";
import { readExtent } from "./extent-slots.js";
import { DISK_LIMITS, type DiskImage, type DiskImageOpener } from "./image.js";

export const openRaw: DiskImageOpener = async (source) => {
  if (source.size === 0) throw new DiskImageError("the disk image is empty");
  if (source.size > DISK_LIMITS.virtualSize)
    throw new DiskImageError(`the disk is ${source.size} bytes, more than the ${DISK_LIMITS.virtualSize} Kiln accepts`);
  const image: DiskImage = {
    format: "raw",
    virtualSize: source.size,
    async *extents(signal) {
      for (let offset = 0; offset < source.size; offset += DISK_LIMITS.extentBytes) {
        signal?.throwIfAborted();
        yield await readExtent(source, offset, offset, Math.min(DISK_LIMITS.extentBytes, source.size - offset));
      }
    },
  };
  return image;
};
