// From a file to its disks: the format is read from the file's own magic, checked against the
// format the request declared, and the matching reader opened. An OVA is a package of disks, so
// one file may give several.
import { DiskImageError } from "./errors.js";
import type { DiskFormat, DiskImage } from "./image.js";
import { looksLikeTar, openOva } from "./ova.js";
import { openQcow2 } from "./qcow2.js";
import { openRaw } from "./raw.js";
import type { ByteSource } from "./source.js";
import { looksLikeVhd, openVhd } from "./vhd.js";
import { openVhdx } from "./vhdx.js";
import { openVmdk } from "./vmdk.js";

/** The Format values an import accepts (AWS's, with QCOW2 as Kiln's extra), case-insensitively. */
export const IMPORT_FORMATS = ["OVA", "VHD", "VHDX", "VMDK", "RAW", "QCOW2"] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

const OPENERS = { raw: openRaw, vhd: openVhd, vhdx: openVhdx, vmdk: openVmdk, qcow2: openQcow2 };

export interface OpenedDisk {
  /** The file the disk came from (the OVA's entry name for a disk in a package). */
  name?: string;
  format: Exclude<DiskFormat, "ova">;
  image: DiskImage;
}

/** The format a file's bytes say it is; raw when no magic matches. */
export async function sniffFormat(source: ByteSource): Promise<DiskFormat> {
  const head = await source.read(0, Math.min(source.size, 1024));
  const text = head.toString("latin1");
  if (text.startsWith("vhdxfile")) return "vhdx";
  if (text.startsWith("KDMV") || /^\s*# Disk DescriptorFile/.test(text)) return "vmdk";
  if (head.length >= 4 && head.readUInt32BE(0) === 0x514649fb) return "qcow2";
  if (await looksLikeVhd(source)) return "vhd";
  if (await looksLikeTar(source)) return "ova";
  return "raw";
}

/**
 * The disks in a file: one, or an OVA's several in attachment order. `declared` (the request's
 * Format) must agree with the file's magic; without it, the magic decides.
 */
export async function openDisks(
  source: ByteSource,
  declared: ImportFormat | undefined,
  companion?: (name: string) => Promise<ByteSource>,
): Promise<OpenedDisk[]> {
  const found = await sniffFormat(source);
  if (declared && declared.toLowerCase() !== found) {
    throw new DiskImageError(
      found === "raw" ? `the file is not a ${declared} image (no ${declared} header found)` : `the file is a ${found.toUpperCase()} image, not ${declared}`,
    );
  }
  if (found !== "ova") return [{ format: found, image: await OPENERS[found](source, companion) }];
  const ova = await openOva(source);
  const inPackage = async (name: string) => {
    const file = ova.file(name);
    if (!file) throw new DiskImageError(`the disk names ${name}, which the OVA does not hold`);
    return file;
  };
  const disks: OpenedDisk[] = [];
  for (const disk of ova.disks) {
    const format = await sniffFormat(disk.source);
    if (format === "ova") throw new DiskImageError(`the OVA's disk ${disk.name} is itself a tar archive`);
    disks.push({ name: disk.name, format, image: await OPENERS[format](disk.source, inPackage) });
  }
  return disks;
}
