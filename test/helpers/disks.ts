// Disks made the way users make them: a GPT disk with an EFI system partition (FAT, holding an
// x86_64 boot loader) and a root (ext4, XFS or btrfs) with /etc/os-release and the machine's own
// /bin/sh, written by sfdisk, mkfs.vfat/mtools and mkfs.ext4 (or mkfs.xfs, mkfs.btrfs), then
// converted by qemu-img and packed into an OVA by tar. Everything lives in a scratch folder.
import { randomBytes, randomFillSync } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { testObjectStoreEndpoint } from "./kiln.js";
import { run } from "./tools.js";

const MIB = 1024 * 1024;
export const OS_RELEASE = 'PRETTY_NAME="Kilnix GNU/Linux 12 (test)"\nNAME="Kilnix GNU/Linux"\nVERSION_ID="12"\nID=kilnix\n';

/** A minimal PE32+ header for an x86_64 EFI application: what an EFI boot loader starts with. */
export function efiApplication(): Buffer {
  const file = Buffer.alloc(1024);
  file.write("MZ", 0, "latin1");
  file.writeUInt32LE(0x80, 0x3c);
  file.write("PE\0\0", 0x80, "latin1");
  file.writeUInt16LE(0x8664, 0x84);
  return file;
}

export type RootFileSystem = "ext4" | "xfs" | "btrfs";

/** The smallest disk for each root (mkfs.xfs refuses file systems under 300 MiB, mkfs.btrfs under about 110). */
const MIN_DISK_MIB: Record<RootFileSystem, number> = { ext4: 64, xfs: 304, btrfs: 128 };

/**
 * makeLinuxDisk's options for a disk whose import lasts long enough that a kill lands among its
 * blocks: less data over an object store, where every block stored is a request to it.
 */
export const KILLABLE_IMPORT = testObjectStoreEndpoint ? { sizeMiB: 384, extraMiB: 192 } : { sizeMiB: 768, extraMiB: 512 };

/**
 * A bootable-looking Linux disk: GPT, partition 1 the EFI system partition (FAT), partition 2
 * the root (ext4 unless `rootFs` says otherwise). Returns the raw file's path.
 */
export async function makeLinuxDisk(dir: string, options: { sizeMiB?: number; extraMiB?: number; rootFs?: RootFileSystem } = {}): Promise<string> {
  const rootFs = options.rootFs ?? "ext4";
  const size = Math.max(options.sizeMiB ?? 64, MIN_DISK_MIB[rootFs]);
  const root = join(dir, "rootfs");
  mkdirSync(join(root, "etc"), { recursive: true });
  mkdirSync(join(root, "usr/lib"), { recursive: true });
  mkdirSync(join(root, "usr/bin"), { recursive: true });
  writeFileSync(join(root, "usr/lib/os-release"), OS_RELEASE);
  symlinkSync("../usr/lib/os-release", join(root, "etc/os-release"));
  copyFileSync("/bin/sh", join(root, "usr/bin/sh"));
  symlinkSync("usr/bin", join(root, "bin"));
  // Data beyond the system files, so a disk is not only metadata and zeros: each MiB a quarter
  // random and the rest text-like, so compressed formats have work to do and no block repeats.
  if (options.extraMiB) {
    const file = openSync(join(root, "usr/lib/payload.bin"), "w");
    const piece = Buffer.alloc(MIB);
    const text = Buffer.from("kiln imports disk images: the quick brown fox jumps over the lazy dog 0123456789\n".repeat(Math.ceil((MIB * 3) / 4 / 80)));
    for (let i = 0; i < options.extraMiB; i++) {
      randomFillSync(piece, 0, MIB / 4);
      text.copy(piece, MIB / 4, 0, (MIB * 3) / 4);
      for (let at = MIB / 4; at < MIB; at += 4096) piece.writeUInt32LE(i, at);
      writeSync(file, piece);
    }
    closeSync(file);
  }
  const fsImage = join(dir, `root.${rootFs}`);
  const rootSectors = (size - 3) * 2048;
  await makeFileSystem(rootFs, root, fsImage, rootSectors * 512);

  const esp = join(dir, "esp.fat");
  writeFileSync(esp, Buffer.alloc(MIB));
  await run("mkfs.vfat", ["-F", "12", esp]);
  writeFileSync(join(dir, "BOOTX64.EFI"), efiApplication());
  await run("mmd", ["-i", esp, "::/EFI", "::/EFI/BOOT"]);
  await run("mcopy", ["-i", esp, join(dir, "BOOTX64.EFI"), "::/EFI/BOOT/BOOTX64.EFI"]);

  const disk = join(dir, "disk.raw");
  await run("truncate", ["-s", `${size}M`, disk]);
  await run("sfdisk", ["-q", disk], {
    input: `label: gpt\nstart=2048, size=2048, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=4096, size=${rootSectors}, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n`,
  });
  await run("dd", [`if=${esp}`, `of=${disk}`, "bs=512", "seek=2048", "conv=notrunc,sparse", "status=none"]);
  await run("dd", [`if=${fsImage}`, `of=${disk}`, "bs=512", "seek=4096", "conv=notrunc,sparse", "status=none"]);
  return disk;
}

/** A file system image of `bytes` holding the host tree `root`, made without mounting. */
async function makeFileSystem(type: RootFileSystem, root: string, image: string, bytes: number): Promise<void> {
  if (type === "ext4") {
    await run("mkfs.ext4", ["-q", "-F", "-d", root, image, `${bytes / 1024}k`], { env: { E2FSPROGS_FAKE_TIME: "1700000000" } });
    return;
  }
  writeFileSync(image, "");
  truncateSync(image, bytes);
  if (type === "btrfs") {
    await run("mkfs.btrfs", ["-q", "-f", "--rootdir", root, image]);
    return;
  }
  const proto = `${image}.proto`;
  writeFileSync(proto, ["kiln", "0 0", "d--755 0 0", ...protofileEntries(root), "$", ""].join("\n"));
  await run("mkfs.xfs", ["-q", "-f", "-p", proto, image]);
}

/** mkfs.xfs(8) protofile lines for the tree under `dir`: "name mode uid gid [source|target]", "$" closing a directory. */
function protofileEntries(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const info = lstatSync(path);
    if (info.isSymbolicLink()) return [`${name} l--777 0 0 ${readlinkSync(path)}`];
    if (info.isDirectory()) return [`${name} d--755 0 0`, ...protofileEntries(path), "$"];
    return [`${name} ---${(info.mode & 0o777).toString(8)} 0 0 ${path}`];
  });
}

/**
 * A Windows-looking disk: an MBR with one bootable NTFS partition holding
 * /Windows/System32/ntoskrnl.exe, a PE32+ for x86_64. Written by mkntfs and, for the folders,
 * through ntfs-3g (FUSE). Returns the raw file's path.
 */
export async function makeWindowsDisk(dir: string): Promise<string> {
  const volume = join(dir, "windows.ntfs");
  const sizeMiB = 64;
  writeFileSync(volume, "");
  truncateSync(volume, (sizeMiB - 1) * MIB);
  await run("mkntfs", ["-F", "-Q", "-q", "-p", "2048", volume]);
  const mount = join(dir, "ntfs-mount");
  mkdirSync(mount, { recursive: true });
  await run("ntfs-3g", [volume, mount]);
  try {
    mkdirSync(join(mount, "Windows", "System32"), { recursive: true });
    writeFileSync(join(mount, "Windows", "System32", "ntoskrnl.exe"), Buffer.concat([efiApplication(), randomBytes(200_000)]));
  } finally {
    await run("fusermount", ["-u", mount]);
  }
  const disk = join(dir, "windows.raw");
  await run("truncate", ["-s", `${sizeMiB}M`, disk]);
  await run("sfdisk", ["-q", disk], { input: `label: dos\nstart=2048, size=${(sizeMiB - 1) * 2048}, type=7, bootable\n` });
  await run("dd", [`if=${volume}`, `of=${disk}`, "bs=512", "seek=2048", "conv=notrunc,sparse", "status=none"]);
  return disk;
}

/** A disk with data but no operating system: one ext4 file system of plain files. */
export async function makeDataDisk(dir: string): Promise<string> {
  const root = join(dir, "data");
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, "notes.txt"), "no operating system here\n");
  const disk = join(dir, "data.raw");
  await run("mkfs.ext4", ["-q", "-F", "-d", root, disk, "16M"]);
  return disk;
}

export type Conversion = "raw" | "vhd-dynamic" | "vhd-fixed" | "vhdx" | "vmdk-stream" | "vmdk-sparse" | "qcow2";

/** The disk converted by qemu-img into one format; returns the new file's path. */
export async function convertDisk(raw: string, to: Conversion): Promise<string> {
  const out = `${raw}.${to}`;
  const args: Record<Conversion, string[]> = {
    raw: ["-O", "raw"],
    "vhd-dynamic": ["-O", "vpc", "-o", "subformat=dynamic"],
    "vhd-fixed": ["-O", "vpc", "-o", "subformat=fixed,force_size=on"],
    vhdx: ["-O", "vhdx"],
    "vmdk-stream": ["-O", "vmdk", "-o", "subformat=streamOptimized"],
    "vmdk-sparse": ["-O", "vmdk", "-o", "subformat=monolithicSparse"],
    qcow2: ["-O", "qcow2"],
  };
  await run("qemu-img", ["convert", "-f", "raw", ...args[to], raw, out]);
  return out;
}

/** An OVF descriptor naming disks in attachment order (SCSI controller, addresses 0, 1, ...). */
export function ovfDescriptor(disks: { href: string; capacity: number }[]): string {
  const files = disks.map((d, i) => `<File ovf:href="${d.href}" ovf:id="file${i + 1}"/>`).join("\n    ");
  const diskList = disks
    .map(
      (d, i) =>
        `<Disk ovf:capacity="${d.capacity}" ovf:diskId="vmdisk${i + 1}" ovf:fileRef="file${i + 1}" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>`,
    )
    .join("\n    ");
  const items = disks
    .map(
      (_, i) =>
        `<Item><rasd:AddressOnParent>${i}</rasd:AddressOnParent><rasd:ElementName>disk${i}</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk${i + 1}</rasd:HostResource><rasd:InstanceID>${10 + i}</rasd:InstanceID><rasd:Parent>3</rasd:Parent><rasd:ResourceType>17</rasd:ResourceType></Item>`,
    )
    .join("\n      ");
  return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References>
    ${files}
  </References>
  <DiskSection><Info>Virtual disks</Info>
    ${diskList}
  </DiskSection>
  <VirtualSystem ovf:id="kiln-test">
    <Info>A virtual machine</Info>
    <VirtualHardwareSection><Info>Virtual hardware</Info>
      <Item><rasd:Address>0</rasd:Address><rasd:ElementName>SCSI controller 0</rasd:ElementName><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceSubType>lsilogic</rasd:ResourceSubType><rasd:ResourceType>6</rasd:ResourceType></Item>
      ${items}
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`;
}

/** An OVA of the raw disks, each as a streamOptimized VMDK, in the order given. */
export async function makeOva(dir: string, raws: string[], name = "vm"): Promise<string> {
  const hrefs: { href: string; capacity: number }[] = [];
  for (const [i, raw] of raws.entries()) {
    const href = `${name}-disk${i + 1}.vmdk`;
    await run("qemu-img", ["convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, join(dir, href)]);
    hrefs.push({ href, capacity: Number((await run("stat", ["-c", "%s", raw])).trim()) });
  }
  writeFileSync(join(dir, `${name}.ovf`), ovfDescriptor(hrefs));
  const ova = join(dir, `${name}.ova`);
  await run("tar", ["--format=ustar", "-cf", ova, "-C", dir, `${name}.ovf`, ...hrefs.map((h) => h.href)]);
  return ova;
}
