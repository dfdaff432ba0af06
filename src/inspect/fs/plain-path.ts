// Paths on the file systems Kiln reads without links (NTFS and FAT: Kiln follows neither NTFS
// reparse points nor anything else), where names match case-insensitively, as Windows does.
import { FS_LIMITS, FileSystemError } from "./filesystem.js";

/**
 * The components of an absolute path, "." dropped and ".." applied lexically (exact when nothing
 * on the way is a link); undefined for a relative or empty path.
 */
export function plainComponents(path: string): string[] | undefined {
  if (!path.startsWith("/")) return undefined;
  const parts: string[] = [];
  let seen = 0;
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (++seen > FS_LIMITS.pathComponents) throw new FileSystemError(`path has more than ${FS_LIMITS.pathComponents} components`);
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return parts;
}

/**
 * The key FAT names compare by, ignoring case: each character upper-cased on its own, never one
 * into two ("ß" stays "ß"), as Windows' one-to-one case tables do. NTFS uses its volume's
 * $UpCase table instead.
 */
export function foldName(name: string): string {
  let out = "";
  for (const char of name) {
    const upper = char.toUpperCase();
    out += upper.length === char.length ? upper : char;
  }
  return out;
}

/** Checks a read length the caller asked for. */
export function checkMaxBytes(maxBytes: number): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`maxBytes ${maxBytes} is not a byte count`);
}
