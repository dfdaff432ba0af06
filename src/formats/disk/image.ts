// One interface for every disk image format (after qemu's block/ drivers): open a file's bytes,
// learn the disk's virtual size, and stream the disk's data in order with the holes skipped.
import type { ByteSource } from "./source.js";

export type DiskFormat = "raw" | "vhd" | "vhdx" | "vmdk" | "qcow2" | "ova";

/** Bytes of the disk at `offset` (virtual, from the disk's first byte). */
export interface Extent {
  offset: number;
  data: Buffer;
  /**
   * Set when `data` lies in a buffer the reader reuses: a consumer done with it calls this so
   * the next extents need no fresh memory. A consumer that never calls it only costs the reader
   * a new buffer; one that calls it must not read `data` afterwards.
   */
  release?: () => void;
}

export interface DiskImage {
  readonly format: DiskFormat;
  /** The disk's size in bytes, as its header declares it (checked against DISK_LIMITS). */
  readonly virtualSize: number;
  /**
   * The disk's data in increasing offset order, never overlapping, every byte below
   * virtualSize; a range not yielded reads as zeros. A yielded extent may hold zeros too. Each
   * extent is at most DISK_LIMITS.extentBytes, so a reader's memory does not grow with the disk.
   * Throws DiskImageError when the file turns out to lie (a table pointing outside the file or
   * at another table, a grain that inflates past its size, a file cut short).
   */
  extents(signal?: AbortSignal): AsyncIterable<Extent>;
}

/**
 * Opens a file of one format: checks its magic and every header field it relies on before
 * trusting it, and throws DiskImageError with a short reason otherwise.
 * `companion` resolves another file the image names (a VMDK descriptor's extent files), by the
 * name written in the image; formats that name none ignore it.
 */
export type DiskImageOpener = (source: ByteSource, companion?: (name: string) => Promise<ByteSource>) => Promise<DiskImage>;

export const DISK_LIMITS = {
  /** The largest virtual size Kiln accepts: EBS's largest volume, 64 TiB. */
  virtualSize: 64 * 1024 ** 4,
  /** The most bytes one yielded extent holds. */
  extentBytes: 4 * 1024 * 1024,
  /** Inflated bytes one compressed grain or cluster may produce (beyond its declared size is a bomb). */
  compressedUnitBytes: 2 * 1024 * 1024,
};
