// What inspection needs of a file system: read a few small files by path. One module per file
// system implements it (ext, xfs, btrfs, ntfs, fat), each opened on the bytes of one partition.
import type { ByteSource } from "../../formats/disk/source.js";

export interface FileSystem {
  readonly type: "ext" | "xfs" | "btrfs" | "ntfs" | "fat";
  /**
   * The first `maxBytes` bytes (or fewer, if the file is shorter) of the regular file at an
   * absolute `path` ("/etc/os-release"), following symbolic links (absolute ones resolve from
   * this file system's root) for at most 8 hops; undefined when there is no such regular file.
   * A link chain longer than that (a loop) throws FileSystemError, as damaged metadata does.
   * NTFS and FAT match names case-insensitively.
   */
  readFile(path: string, maxBytes: number): Promise<Buffer | undefined>;
}

/**
 * Opens the file system whose superblock is in `source`, or resolves undefined when the magic
 * is not this file system's. Metadata that cannot be trusted (out of range, looping, absurdly
 * large) throws FileSystemError; a reader never allocates what a header claims without bounds.
 */
export type FileSystemOpener = (source: ByteSource) => Promise<FileSystem | undefined>;

export class FileSystemError extends Error {
  override readonly name = "FileSystemError";
}

/** Bounds every reader keeps, so a hostile image costs little. */
export const FS_LIMITS = {
  symlinkHops: 8,
  /** Bytes of one directory a lookup will scan. */
  directoryBytes: 64 * 1024 * 1024,
  /** Depth of any on-disk tree (extent trees, B-trees, index blocks). */
  treeDepth: 16,
  /** Path components. */
  pathComponents: 64,
};
