// What an imported disk boots: its partition table, the file systems on it, and in them the
// files that name an operating system. Linux is found by /etc/os-release (the freedesktop.org
// os-release specification) and a system binary's ELF header; Windows by its kernel's PE
// header; UEFI boot by an EFI system partition on a GPT disk.
import { DiskImageError } from "../formats/disk/errors.js";
import type { ByteSource } from "../formats/disk/source.js";
import { sliceSource } from "../formats/disk/source.js";
import { ARCHITECTURES, architectureOf, HEADER_BYTES, type Architecture } from "./executables.js";
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

/** How far the search got in one volume, so a disk without an operating system can say why. */
export interface VolumeFinding {
  /** Undefined when the disk has no partitions and the whole disk was read as one volume. */
  partition?: number;
  fileSystem?: FileSystem["type"];
  outcome: "no file system" | "EFI system partition" | "no kernel" | "unknown kernel" | "no os-release" | "no system binary";
}

export interface DiskInspection {
  partitionScheme: PartitionTable["scheme"];
  /** The volumes searched without finding an operating system (and EFI system partitions). */
  findings: VolumeFinding[];
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
  const volumes = table.partitions.length
    ? table.partitions.map((p) => ({ partition: p.number, source: sliceSource(disk, p.start, Math.min(p.size, disk.size - p.start)), efiSystem: p.efiSystem }))
    : [{ partition: undefined, source: disk, efiSystem: false }];
  const hasEsp = table.scheme === "gpt" && table.partitions.some((p) => p.efiSystem);
  const result: DiskInspection = { partitionScheme: table.scheme, findings: [], bootMode: hasEsp ? "uefi" : "legacy-bios" };
  let efiArchitecture: Architecture | undefined;
  for (const volume of volumes) {
    if (result.platform && !volume.efiSystem) continue;
    const fs = await openFileSystem(volume.source);
    const found = (outcome: VolumeFinding["outcome"]) => result.findings.push({ partition: volume.partition, fileSystem: fs?.type, outcome });
    if (!fs) {
      found("no file system");
      continue;
    }
    if (volume.efiSystem) {
      efiArchitecture ??= await firstArchitecture(fs, EFI_LOADERS);
      found("EFI system partition");
      continue;
    }
    if (fs.type === "ntfs") {
      const kernel = await readSafely(fs, WINDOWS_KERNEL, HEADER_BYTES);
      const architecture = kernel && architectureOf(kernel);
      if (architecture) Object.assign(result, { platform: "Windows", architecture, rootFileSystem: fs.type });
      else found(kernel ? "unknown kernel" : "no kernel");
      continue;
    }
    let outcome: VolumeFinding["outcome"] = "no os-release";
    for (const root of fs.type === "btrfs" ? BTRFS_ROOTS : [""]) {
      let release: Buffer | undefined;
      for (const path of OS_RELEASE) release ??= await readSafely(fs, root + path, OS_RELEASE_BYTES);
      if (!release) continue;
      const architecture = await firstArchitecture(
        fs,
        LINUX_BINARIES.map((path) => root + path),
      );
      if (!architecture) {
        outcome = "no system binary";
        continue;
      }
      Object.assign(result, { platform: "Linux", architecture, distribution: parseOsRelease(release.toString("utf8")), rootFileSystem: fs.type });
      break;
    }
    if (!result.platform) found(outcome);
  }
  result.architecture ??= efiArchitecture;
  return result;
}

const FILE_SYSTEM_NAMES: Record<FileSystem["type"], string> = { ext: "ext2/3/4", xfs: "XFS", btrfs: "btrfs", ntfs: "NTFS", fat: "FAT" };
/** Enough volumes to say what a disk holds; a disk of hundreds of partitions gets a count for the rest. */
const FINDINGS_LISTED = 8;

/**
 * Why `inspection` found no operating system, in one line after AWS's "Unknown OS" status: what
 * each volume held, and what Kiln looks for (from the same lists the search uses).
 */
export function explainUnknownOs(inspection: DiskInspection): string {
  const architectures = anyOf(ARCHITECTURES);
  const said = (finding: VolumeFinding): string => {
    const where = finding.partition === undefined ? "the whole disk" : `partition ${finding.partition}`;
    const fileSystem = finding.fileSystem && FILE_SYSTEM_NAMES[finding.fileSystem];
    switch (finding.outcome) {
      case "no file system":
        return `${where} holds no file system Kiln can read`;
      case "EFI system partition":
        return `${where} is the EFI system partition (${fileSystem})`;
      case "no kernel":
        return `${where} is NTFS without ${WINDOWS_KERNEL}`;
      case "unknown kernel":
        return `${where} is NTFS whose ${WINDOWS_KERNEL} is no PE file for ${architectures}`;
      case "no os-release":
        return `${where} is ${fileSystem} without an os-release`;
      case "no system binary":
        return `${where} is ${fileSystem} with an os-release but no system binary for ${architectures}`;
    }
  };
  const { partitionScheme, findings } = inspection;
  const table = { none: "a disk with no partition table", gpt: "a GPT disk", mbr: "an MBR disk" }[partitionScheme];
  const disk = partitionScheme === "none" || findings.some((f) => f.partition !== undefined) ? table : `${table} with no partitions`;
  const listed = findings.slice(0, FINDINGS_LISTED).map(said);
  if (findings.length > FINDINGS_LISTED) listed.push(`${findings.length - FINDINGS_LISTED} more partitions`);
  const linuxFileSystems = Object.entries(FILE_SYSTEM_NAMES).flatMap(([type, name]) => (type === "ntfs" ? [] : [name]));
  const btrfsRoots = BTRFS_ROOTS.filter(Boolean).join(" and ");
  return (
    `Kiln read ${disk}: ${listed.join("; ")}. For Linux it looks for ${anyOf(OS_RELEASE)} and an ELF header in one of ${anyOf(LINUX_BINARIES)} ` +
    `(on ${anyOf(linuxFileSystems)}; in btrfs also under ${btrfsRoots}); for Windows, the PE header of ${WINDOWS_KERNEL} (on NTFS).`
  );
}

/** "a, b or c" */
const anyOf = (items: readonly string[]) => (items.length > 1 ? `${items.slice(0, -1).join(", ")} or ${items.at(-1)}` : (items[0] ?? ""));
