// What an imported disk boots: its partition table, the file systems on it, and in them the
// files that name an operating system. Linux is found by /etc/os-release (the freedesktop.org
// os-release specification) and a system binary's ELF header; Windows by its kernel's PE
// header; UEFI boot by an EFI system partition on a GPT disk.
import { DiskImageError } from "../formats/disk/errors.js";
import type { ByteSource } from "../formats/disk/source.js";
import { sliceSource } from "../formats/disk/source.js";
import { architectureOf, HEADER_BYTES, type Architecture } from "./executables.js";
import { openBtrfs } from "./fs/btrfs.js";
import { openExt } from "./fs/ext.js";
import { openFat } from "./fs/fat.js";
import { FileSystemError, type FileSystem, type FileSystemOpener } from "./fs/filesystem.js";
import { openNtfs } from "./fs/ntfs.js";
import { openXfs } from "./fs/xfs.js";
import { readPartitions, type PartitionTable } from "./partitions.js";

const FILE_SYSTEMS: readonly FileSystemOpener[] = [openExt, openXfs, openBtrfs, openNtfs, openFat];

const OS_RELEASE = ["/etc/os-release", "/usr/lib/os-release"];
/** Binaries every Linux distribution has, one of which tells the architecture. */
const LINUX_BINARIES = ["/bin/sh", "/usr/bin/sh", "/bin/ls", "/usr/bin/ls", "/sbin/init", "/usr/lib/systemd/systemd", "/bin/busybox"];
const WINDOWS_KERNEL = "/Windows/System32/ntoskrnl.exe";
const EFI_LOADERS = ["/EFI/BOOT/BOOTX64.EFI", "/EFI/BOOT/BOOTAA64.EFI", "/EFI/BOOT/BOOTIA32.EFI"];
const OS_RELEASE_BYTES = 64 * 1024;
/**
 * Where a distribution's root may sit inside a btrfs file system: the top, or the subvolume
 * Fedora ("root") or Ubuntu ("@") install into while leaving the default subvolume at the top.
 */
const BTRFS_ROOTS = ["", "/root", "/@"];

export interface Distribution {
  id?: string;
  name?: string;
  versionId?: string;
  prettyName?: string;
}

export interface DiskInspection {
  partitionScheme: PartitionTable["scheme"];
  platform?: "Linux" | "Windows";
  architecture?: Architecture;
  bootMode: "uefi" | "legacy-bios";
  distribution?: Distribution;
  /** The file system the operating system lives on. */
  rootFileSystem?: FileSystem["type"];
}

/** Damage in a file system (or a header sending reads past its partition) is no OS, not a fault. */
const isDamage = (error: unknown) => error instanceof FileSystemError || error instanceof DiskImageError;

/** Opens whichever file system `source` holds, or undefined. A damaged one counts as none. */
async function openFileSystem(source: ByteSource): Promise<FileSystem | undefined> {
  for (const open of FILE_SYSTEMS) {
    try {
      const fs = await open(source);
      if (fs) return fs;
    } catch (error) {
      if (!isDamage(error)) throw error;
    }
  }
  return undefined;
}

/** A file's first bytes, or undefined when it is missing or its metadata is damaged. */
async function readSafely(fs: FileSystem, path: string, maxBytes: number): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(path, maxBytes);
  } catch (error) {
    if (isDamage(error)) return undefined;
    throw error;
  }
}

export function parseOsRelease(text: string): Distribution {
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (!match) continue;
    let value = match[2]!;
    if (/^(["']).*\1$/.test(value)) value = value.slice(1, -1).replace(/\\(["'$`\\])/g, "$1");
    fields.set(match[1]!, value);
  }
  return { id: fields.get("ID"), name: fields.get("NAME"), versionId: fields.get("VERSION_ID"), prettyName: fields.get("PRETTY_NAME") };
}

async function firstArchitecture(fs: FileSystem, paths: readonly string[]): Promise<Architecture | undefined> {
  for (const path of paths) {
    const header = await readSafely(fs, path, HEADER_BYTES);
    const architecture = header && architectureOf(header);
    if (architecture) return architecture;
  }
  return undefined;
}

export async function inspectDisk(disk: ByteSource): Promise<DiskInspection> {
  const table = await readPartitions(disk);
  const volumes = table.partitions.length ? table.partitions.map((p) => ({ source: sliceSource(disk, p.start, Math.min(p.size, disk.size - p.start)), efiSystem: p.efiSystem })) : [{ source: disk, efiSystem: false }];
  const hasEsp = table.scheme === "gpt" && table.partitions.some((p) => p.efiSystem);
  const result: DiskInspection = { partitionScheme: table.scheme, bootMode: hasEsp ? "uefi" : "legacy-bios" };
  let efiArchitecture: Architecture | undefined;
  for (const volume of volumes) {
    const fs = await openFileSystem(volume.source);
    if (!fs) continue;
    if (volume.efiSystem) {
      efiArchitecture ??= await firstArchitecture(fs, EFI_LOADERS);
      continue;
    }
    if (result.platform) continue;
    if (fs.type === "ntfs") {
      const kernel = await readSafely(fs, WINDOWS_KERNEL, HEADER_BYTES);
      const architecture = kernel && architectureOf(kernel);
      if (architecture) Object.assign(result, { platform: "Windows", architecture, rootFileSystem: fs.type });
      continue;
    }
    for (const root of fs.type === "btrfs" ? BTRFS_ROOTS : [""]) {
      let release: Buffer | undefined;
      for (const path of OS_RELEASE) release ??= await readSafely(fs, root + path, OS_RELEASE_BYTES);
      if (!release) continue;
      const architecture = await firstArchitecture(fs, LINUX_BINARIES.map((path) => root + path));
      if (!architecture) continue;
      Object.assign(result, { platform: "Linux", architecture, distribution: parseOsRelease(release.toString("utf8")), rootFileSystem: fs.type });
      break;
    }
  }
  result.architecture ??= efiArchitecture;
  return result;
}
