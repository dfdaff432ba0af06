// OVA: a tar (POSIX ustar, with pax or GNU long names) holding an OVF descriptor and the disks
// it names (DMTF DSP0243, "Open Virtualization Format Specification" 2.x). The package is read in
// place: its entries are indexed by their headers, and each disk is a slice of the tar, so
// nothing is extracted and no name in the archive ever becomes a path on Kiln's disk.
import { XMLParser } from "fast-xml-parser";
import { DiskImageError } from "./errors.js";
import { sliceSource, type ByteSource } from "./source.js";

const BLOCK = 512;
const MAX_ENTRIES = 1024;
const MAX_OVF_BYTES = 4 * 1024 * 1024;
/** RASD ResourceType 17: a disk drive (CIM_ResourceAllocationSettingData). */
const DISK_DRIVE = "17";

export interface OvaDisk {
  /** The file's name in the package (the OVF's ovf:href). */
  name: string;
  source: ByteSource;
}

export interface OvaPackage {
  /** The disks in the order the virtual machine attaches them: the first is the boot disk. */
  disks: OvaDisk[];
  /** Another file of the package by name (a VMDK descriptor's extents). */
  file(name: string): ByteSource | undefined;
}

interface TarEntry {
  name: string;
  offset: number;
  size: number;
}

/** True when the file starts with a ustar header (POSIX "ustar\0" or GNU "ustar  "). */
export async function looksLikeTar(source: ByteSource): Promise<boolean> {
  if (source.size < BLOCK) return false;
  return (await source.read(0, BLOCK)).toString("latin1", 257, 262) === "ustar";
}

export async function openOva(source: ByteSource): Promise<OvaPackage> {
  const entries = await indexTar(source);
  const byName = new Map(entries.map((e) => [e.name, e]));
  const descriptor = entries.find((e) => e.name.toLowerCase().endsWith(".ovf"));
  if (!descriptor) throw new DiskImageError("the OVA holds no OVF descriptor (.ovf)");
  if (descriptor.size > MAX_OVF_BYTES) throw new DiskImageError("the OVA's OVF descriptor is larger than 4 MiB");
  const hrefs = diskFiles((await source.read(descriptor.offset, descriptor.size)).toString("utf8"));
  if (hrefs.length === 0) throw new DiskImageError("the OVF descriptor names no disk");
  const file = (name: string) => {
    const entry = byName.get(checkName(name));
    return entry && sliceSource(source, entry.offset, entry.size);
  };
  const disks = hrefs.map((name) => {
    const disk = file(name);
    if (!disk) throw new DiskImageError(`the OVF descriptor names ${name}, which the OVA does not hold`);
    return { name, source: disk };
  });
  return { disks, file };
}

/** A name inside the package: relative, with no way out of it. */
function checkName(name: string): string {
  const clean = name.replace(/^(\.\/)+/, "");
  if (
    clean === "" ||
    clean.startsWith("/") ||
    clean.includes("\\") ||
    clean.split("/").some((part) => part === ".." || part === "") ||
    /^[a-z][a-z0-9+.-]*:/i.test(clean)
  ) {
    throw new DiskImageError(`the OVA names a file outside the package: ${JSON.stringify(name)}`);
  }
  return clean;
}

async function indexTar(source: ByteSource): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  let at = 0;
  let longName: string | undefined;
  let paxName: string | undefined;
  let paxSize: number | undefined;
  while (at + BLOCK <= source.size) {
    const header = await source.read(at, BLOCK);
    if (header.every((b) => b === 0)) break; // the end-of-archive blocks
    if (header.toString("latin1", 257, 262) !== "ustar") throw new DiskImageError(`the OVA is not a tar archive: no ustar header at offset ${at}`);
    checkHeaderSum(header, at);
    const type = String.fromCharCode(header[156]!);
    const size = paxSize ?? octalOrBinary(header.subarray(124, 136), at);
    const dataAt = at + BLOCK;
    if (dataAt + size > source.size) throw new DiskImageError(`the OVA is truncated: an entry of ${size} bytes at offset ${at} runs past its end`);
    const next = dataAt + Math.ceil(size / BLOCK) * BLOCK;
    if (type === "L" || type === "x") {
      if (size > 64 * 1024) throw new DiskImageError("the OVA has an extended header larger than 64 KiB");
      const body = await source.read(dataAt, size);
      if (type === "L") longName = body.toString("utf8").replace(/\0.*$/s, "");
      else ({ name: paxName, size: paxSize } = parsePax(body));
      at = next;
      continue;
    }
    if (type === "g") {
      at = next;
      continue;
    }
    const prefix = cString(header.subarray(345, 500));
    const raw = paxName ?? longName ?? (prefix ? `${prefix}/${cString(header.subarray(0, 100))}` : cString(header.subarray(0, 100)));
    longName = paxName = paxSize = undefined;
    // Regular files only; directories and links are not part of an OVF package's contents.
    if (type === "0" || type === "\0" || type === "7") {
      if (entries.length >= MAX_ENTRIES) throw new DiskImageError(`the OVA holds more than ${MAX_ENTRIES} files`);
      entries.push({ name: checkName(raw), offset: dataAt, size });
    }
    at = next;
  }
  return entries;
}

function cString(bytes: Buffer): string {
  const end = bytes.indexOf(0);
  return bytes.toString("utf8", 0, end < 0 ? bytes.length : end);
}

/** A numeric field: octal text, or (GNU) big-endian binary when its first byte has the high bit. */
function octalOrBinary(field: Buffer, at: number): number {
  if (field[0]! & 0x80) {
    let value = 0n;
    for (let i = 1; i < field.length; i++) value = (value << 8n) | BigInt(field[i]!);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new DiskImageError(`the OVA entry at offset ${at} declares an absurd size`);
    return Number(value);
  }
  const text = cString(field).trim();
  if (!/^[0-7]*$/.test(text)) throw new DiskImageError(`the OVA entry at offset ${at} has a malformed size`);
  return text === "" ? 0 : parseInt(text, 8);
}

function checkHeaderSum(header: Buffer, at: number): void {
  // POSIX: the sum of the header's bytes with the checksum field taken as eight spaces.
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!;
  const stored = parseInt(cString(header.subarray(148, 156)).trim(), 8);
  if (stored !== sum) throw new DiskImageError(`the OVA's tar header at offset ${at} has a wrong checksum`);
}

/** pax extended header records: "<length> <key>=<value>\n". */
function parsePax(body: Buffer): { name?: string; size?: number } {
  const out: { name?: string; size?: number } = {};
  let at = 0;
  while (at < body.length) {
    const space = body.indexOf(0x20, at);
    const length = space > at ? parseInt(body.toString("latin1", at, space), 10) : NaN;
    if (!Number.isSafeInteger(length) || length <= 0 || at + length > body.length) throw new DiskImageError("the OVA has a malformed pax header");
    const record = body.toString("utf8", space + 1, at + length - 1);
    const equals = record.indexOf("=");
    const key = record.slice(0, equals);
    const value = record.slice(equals + 1);
    if (key === "path") out.name = value;
    if (key === "size") {
      if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) throw new DiskImageError("the OVA has a pax size that is not a number");
      out.size = Number(value);
    }
    at += length;
  }
  return out;
}

const ovfParser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@",
  removeNSPrefix: true,
  parseTagValue: false,
  trimValues: true,
  isArray: (_name, _path, _leaf, isAttribute) => !isAttribute,
});

type Node = Record<string, unknown>;
const children = (node: Node | undefined, name: string): Node[] => (node?.[name] as Node[] | undefined) ?? [];
const text = (node: Node | undefined, name: string): string | undefined => {
  const value = children(node, name)[0];
  return typeof value === "string" ? value : (value?.["#text"] as string | undefined);
};
const attribute = (node: Node, name: string): string | undefined => node[`@${name}`] as string | undefined;

/** The disk files an OVF descriptor names, in the order its virtual hardware attaches them. */
function diskFiles(xml: string): string[] {
  if (/<!DOCTYPE/i.test(xml)) throw new DiskImageError("the OVF descriptor has a DOCTYPE, which Kiln does not read");
  let tree: Node;
  try {
    tree = ovfParser.parse(xml, true) as Node;
  } catch (error) {
    throw new DiskImageError(`the OVF descriptor is not well-formed XML: ${(error as Error).message}`);
  }
  const envelope = children(tree, "Envelope")[0];
  if (!envelope) throw new DiskImageError("the OVF descriptor has no Envelope");
  const files = new Map<string, string>();
  for (const file of children(children(envelope, "References")[0], "File")) {
    const id = attribute(file, "id");
    const href = attribute(file, "href");
    if (!id || !href) continue;
    if (attribute(file, "compression"))
      throw new DiskImageError(`the OVA's disk ${href} is compressed (${attribute(file, "compression")}), which Kiln does not support`);
    if (attribute(file, "chunkSize")) throw new DiskImageError(`the OVA's disk ${href} is split into chunks, which Kiln does not support`);
    files.set(id, checkName(href));
  }
  const disks = new Map<string, string>();
  for (const disk of children(children(envelope, "DiskSection")[0], "Disk")) {
    const id = attribute(disk, "diskId");
    const ref = attribute(disk, "fileRef");
    if (!id || !ref) continue;
    const href = files.get(ref);
    if (!href) throw new DiskImageError(`the OVF disk ${id} refers to file ${ref}, which References does not list`);
    disks.set(id, href);
  }
  // The hardware section attaches disks to controllers; its order (controller, then address)
  // is the order the machine sees them in. Disks it does not attach come last, as listed.
  const systems = [...children(envelope, "VirtualSystem"), ...children(children(envelope, "VirtualSystemCollection")[0], "VirtualSystem")];
  const items = systems.flatMap((s) => children(s, "VirtualHardwareSection").flatMap((h) => children(h, "Item")));
  const controllers = items.map((item) => text(item, "InstanceID"));
  const attached = items
    .filter((item) => text(item, "ResourceType") === DISK_DRIVE)
    .map((item, order) => ({
      disk: /^ovf:\/disk\/(.+)$/.exec(text(item, "HostResource") ?? "")?.[1],
      controller: controllers.indexOf(text(item, "Parent")),
      address: Number(text(item, "AddressOnParent") ?? order),
      order,
    }))
    .filter((a) => a.disk !== undefined && disks.has(a.disk))
    .sort((a, b) => a.controller - b.controller || a.address - b.address || a.order - b.order)
    .map((a) => a.disk!);
  const ordered = [...new Set(attached), ...[...disks.keys()].filter((id) => !attached.includes(id))];
  return ordered.map((id) => disks.get(id)!);
}
