// VMware's VMDK, as "Virtual Disk Format 1.1" (VMware technical note) describes it:
//
//   - a hosted sparse extent: the "KDMV" SparseExtentHeader (§ "Hosted Sparse Extent Header"),
//     an embedded descriptor, a grain directory (GD) of grain table (GT) sector numbers, and
//     grain tables of grain sector numbers; monolithicSparse is one such file;
//   - its stream-optimized form (§ "Stream-Optimized Compressed Sparse Extents"): every grain
//     deflated behind a 12-byte marker, and the GD possibly only in a footer at the file's end;
//   - a text descriptor (§ "The Descriptor File") that strings FLAT, ZERO and SPARSE extent files
//     together (monolithicFlat, twoGbMaxExtentFlat, twoGbMaxExtentSparse).
//
// Read-only and streaming: the GD is read in slices and the GTs a short run at a time, data is
// read in runs of up to DISK_LIMITS.extentBytes, and runs of compressed grains are inflated on
// worker threads a few runs ahead of the consumer, so memory stays flat whatever the disk's size.
import { DiskImageError } from "./errors.js";
import { readExtent, readPooled } from "./extent-slots.js";
import { inflatePieces, InflateFailure, type Inflated } from "./inflate.js";
import { DISK_LIMITS, type DiskImage, type DiskImageOpener, type Extent } from "./image.js";
import type { ByteSource } from "./source.js";

const SECTOR = 512;
// The magic number is "KDMV" as bytes, read as a little-endian u32 (SparseExtentHeader.magicNumber).
const SPARSE_MAGIC = 0x564d444b;
// "COWD": the older ESX/GSX sparse format (VMFSSPARSE extents), which Kiln does not read.
const COWD_MAGIC = 0x44574f43;
const GD_AT_END = 0xffffffffffffffffn;

// SparseExtentHeader.flags (spec § "Hosted Sparse Extent Header"; bit 2 is the zeroed-grain
// GTE extension of version 2 headers).
const FLAG_NEWLINE_TEST = 1 << 0;
const FLAG_REDUNDANT_GD = 1 << 1;
const FLAG_ZEROED_GRAIN = 1 << 2;
const FLAG_COMPRESSED = 1 << 16;
const FLAG_MARKERS = 1 << 17;
const KNOWN_FLAGS = FLAG_NEWLINE_TEST | FLAG_REDUNDANT_GD | FLAG_ZEROED_GRAIN | FLAG_COMPRESSED | FLAG_MARKERS;
const COMPRESSION_DEFLATE = 1;
// A GTE of 1 reads as a grain of zeros when FLAG_ZEROED_GRAIN is set.
const GTE_ZEROED = 1;

// Marker types (spec § "Stream-Optimized Compressed Sparse Extents", MarkerType).
const MARKER_EOS = 0;
const MARKER_FOOTER = 3;
const GRAIN_MARKER_BYTES = 12; // u64 lba, u32 size, then the deflated grain

/** Grains above this are absurd: one must inflate within DISK_LIMITS.compressedUnitBytes. */
const MAX_GRAIN_BYTES = Math.min(DISK_LIMITS.compressedUnitBytes, DISK_LIMITS.extentBytes);
/** The spec fixes numGTEsPerGT at 512; more only makes a table larger to trust. */
const MAX_GTES_PER_GT = 512;
/** A descriptor is a few hundred bytes of text; anything much larger is not one. */
const MAX_DESCRIPTOR_BYTES = 1024 * 1024;
/** A 64 TiB disk in twoGbMaxExtent pieces needs 32768 extents. */
const MAX_EXTENTS = 65536;
/** Bytes of grain directory read at once. */
const GD_SLICE_BYTES = 64 * 1024;
/** Bytes of adjacent grain tables read at once. */
const GT_RUN_BYTES = 256 * 1024;
/** Bytes of one read of data (flat data, a run of grains, a run of compressed grains). */
const READ_BYTES = DISK_LIMITS.extentBytes;
/** Reads (each with its inflates) under way ahead of the consumer. */
const WINDOW = 3;
/** Granularity at which flat extents skip zeros, so a preallocated flat file yields only its data. */
const ZERO_PROBE = 64 * 1024;
const ZEROS = Buffer.alloc(Math.max(ZERO_PROBE, SECTOR));

/** One read (with its inflates) producing extents; run a few ahead, yielded in order. */
type Job = () => Promise<Extent[]>;

/** A piece of the disk: `sectors` long, its data produced as jobs relative to `base` (bytes). */
interface Part {
  readonly sectors: number;
  jobs(base: number, signal?: AbortSignal): AsyncGenerator<Job>;
}

const fail = (reason: string): never => {
  throw new DiskImageError(reason);
};

/** A u64 field as a number; values past 2^53 come out unsafe and fail the bounds checks after. */
const u64 = (bytes: Buffer, at: number) => Number(bytes.readBigUInt64LE(at));

export const openVmdk: DiskImageOpener = async (source, companion) => {
  if (source.size < 4) fail("not a VMDK file: too short");
  const magic = (await source.read(0, 4)).readUInt32LE(0);
  let parts: Part[];
  if (magic === SPARSE_MAGIC) {
    parts = [await openSparse(source, "")];
  } else if (magic === COWD_MAGIC) {
    return fail("VMDK COWD (ESX 2 / GSX) sparse extents are not supported");
  } else {
    parts = await openDescriptor(source, companion);
  }
  const sectors = parts.reduce((sum, part) => sum + part.sectors, 0);
  return diskImage(parts, sectors * SECTOR);
};

function diskImage(parts: Part[], virtualSize: number): DiskImage {
  return {
    format: "vmdk",
    virtualSize,
    async *extents(signal) {
      async function* jobs() {
        let base = 0;
        for (const part of parts) {
          yield* part.jobs(base, signal);
          base += part.sectors * SECTOR;
        }
      }
      for await (const extents of inOrder(jobs(), WINDOW, signal)) yield* extents;
    },
  };
}

/**
 * Runs up to `window` jobs at once and yields their results in the order the jobs came, so reads
 * and inflates overlap the consumer's work while the disk still comes out front to back.
 */
async function* inOrder<T>(jobs: AsyncGenerator<() => Promise<T>>, window: number, signal?: AbortSignal): AsyncGenerator<T> {
  const pending: Promise<T>[] = [];
  let exhausted = false;
  try {
    for (;;) {
      while (!exhausted && pending.length < window) {
        const next = await jobs.next();
        if (next.done) exhausted = true;
        else {
          const started = next.value();
          // Awaited below in turn; a job that fails while an earlier one is still awaited must not
          // surface as an unhandled rejection (nor after the consumer has stopped).
          started.catch(() => {});
          pending.push(started);
        }
      }
      const head = pending.shift();
      if (!head) return;
      const result = await head;
      signal?.throwIfAborted();
      yield result;
    }
  } finally {
    await jobs.return(undefined);
  }
}

// ---------------------------------------------------------------------------------------------
// Hosted sparse extents (monolithicSparse, streamOptimized, twoGbMaxExtentSparse pieces)

interface SparseHeader {
  version: number;
  flags: number;
  capacity: number; // sectors
  grainSectors: number;
  descriptorOffset: number; // sectors
  descriptorSize: number; // sectors
  gtesPerGt: number;
  rgdOffset: number; // sectors
  gdOffset: number | "end"; // sectors
  compressAlgorithm: number;
}

/** SparseExtentHeader (spec § "Hosted Sparse Extent Header"), little-endian, 512 bytes. */
function parseSparseHeader(bytes: Buffer, where: string): SparseHeader {
  if (bytes.readUInt32LE(0) !== SPARSE_MAGIC) fail(`${where}no VMDK sparse extent header`);
  const version = bytes.readUInt32LE(4);
  if (version < 1 || version > 3) fail(`${where}VMDK sparse extent version ${version} is not supported`);
  const flags = bytes.readUInt32LE(8);
  if (flags & ~KNOWN_FLAGS) fail(`${where}VMDK header flags 0x${(flags & ~KNOWN_FLAGS).toString(16)} are not supported`);
  // singleEndLineChar, nonEndLineChar, doubleEndLineChar1/2: "\n", " ", "\r", "\n" unless a text-mode
  // transfer mangled the file.
  if (flags & FLAG_NEWLINE_TEST && !bytes.subarray(73, 77).equals(Buffer.from("\n \r\n", "latin1"))) {
    fail(`${where}the VMDK header's newline check bytes are damaged (was it transferred as text?)`);
  }
  return {
    version,
    flags,
    capacity: u64(bytes, 12),
    grainSectors: u64(bytes, 20),
    descriptorOffset: u64(bytes, 28),
    descriptorSize: u64(bytes, 36),
    gtesPerGt: bytes.readUInt32LE(44),
    rgdOffset: u64(bytes, 48),
    gdOffset: bytes.readBigUInt64LE(56) === GD_AT_END ? "end" : u64(bytes, 56),
    compressAlgorithm: bytes.readUInt16LE(77),
  };
}

/** A sector range [start, end) of metadata that no grain or table may share. */
type Range = readonly [number, number];
const overlaps = (ranges: readonly Range[], start: number, end: number) => ranges.some(([from, to]) => start < to && from < end);

class SparseExtent implements Part {
  readonly sectors: number;
  private readonly grainBytes: number;
  private readonly gtSectors: number;
  private readonly gdEntries: number;
  private readonly compressed: boolean;
  private readonly zeroedGrains: boolean;
  private readonly fileSectors: number;

  constructor(
    private readonly source: ByteSource,
    private readonly where: string,
    private readonly header: SparseHeader & { gdOffset: number },
    private readonly metadata: readonly Range[],
    limit: number,
  ) {
    this.sectors = limit;
    this.grainBytes = header.grainSectors * SECTOR;
    this.gtSectors = Math.ceil((header.gtesPerGt * 4) / SECTOR);
    this.gdEntries = Math.ceil(header.capacity / (header.grainSectors * header.gtesPerGt));
    this.compressed = (header.flags & FLAG_COMPRESSED) !== 0;
    this.zeroedGrains = (header.flags & FLAG_ZEROED_GRAIN) !== 0;
    this.fileSectors = Math.floor(source.size / SECTOR);
  }

  /** Only the first `sectors` of the extent, as a descriptor that names it may say. */
  limitedTo(sectors: number): SparseExtent {
    return new SparseExtent(this.source, this.where, this.header, this.metadata, sectors);
  }

  async *jobs(base: number, signal?: AbortSignal): AsyncGenerator<Job> {
    const { source, where, header, gtSectors } = this;
    const gtBytes = header.gtesPerGt * 4;
    const emptyTable = ZEROS.subarray(0, gtBytes);
    const maxRun = Math.max(1, Math.floor(GT_RUN_BYTES / (gtSectors * SECTOR)));
    // A directory pointing many times at one table, or tables at one grain, would replay a small
    // file into a huge disk: what the tables map can never exceed what the file holds.
    let tableBytes = 0;
    let mappedBytes = 0;
    const batch = new GrainBatch();

    for (let first = 0; first < this.gdEntries; first += GD_SLICE_BYTES / 4) {
      const count = Math.min(GD_SLICE_BYTES / 4, this.gdEntries - first);
      const directory = await source.read(header.gdOffset * SECTOR + first * 4, count * 4);
      for (let i = 0; i < count; ) {
        const gt = first + i;
        const gtSector = directory.readUInt32LE(i * 4);
        if (gtSector === 0) {
          // The whole table's span is unallocated (and, with no parent, reads as zeros).
          i++;
          continue;
        }
        // Tables are usually laid out back to back: read a run of them at once (a run stops at
        // the file's end, so a table outside it is reported as itself).
        let run = 1;
        const next = () => gtSector + (run + 1) * gtSectors;
        while (i + run < count && run < maxRun && next() <= this.fileSectors && directory.readUInt32LE((i + run) * 4) === gtSector + run * gtSectors) run++;
        const tablesEnd = gtSector + run * gtSectors;
        if (tablesEnd > this.fileSectors) fail(`${where}grain table ${gt} points outside the file`);
        if (overlaps(this.metadata, gtSector, tablesEnd)) fail(`${where}grain table ${gt} overlaps the header or grain directory`);
        tableBytes += run * gtSectors * SECTOR;
        if (tableBytes > source.size) fail(`${where}the grain directory lists more grain tables than the file holds`);
        const tables = await source.read(gtSector * SECTOR, run * gtSectors * SECTOR);
        const tableRange: Range[] = [[gtSector, tablesEnd]];

        for (let r = 0; r < run; r++) {
          const table = tables.subarray(r * gtSectors * SECTOR, r * gtSectors * SECTOR + gtBytes);
          const index = gt + r;
          if (table.equals(emptyTable)) continue;
          for (let entry = 0; entry < header.gtesPerGt; entry++) {
            const lba = (index * header.gtesPerGt + entry) * header.grainSectors;
            if (lba >= this.sectors) break;
            const grain = table.readUInt32LE(entry * 4);
            if (grain === 0 || (grain === GTE_ZEROED && this.zeroedGrains)) continue;
            const bytes = Math.min(this.grainBytes, (this.sectors - lba) * SECTOR);
            // Compressed grains are packed at sector granularity: each holds at least a sector.
            const stored = this.compressed ? SECTOR : bytes;
            const end = this.compressed ? grain * SECTOR + GRAIN_MARKER_BYTES : grain * SECTOR + bytes;
            if (end > source.size) fail(`${where}grain table ${index} points outside the file (entry ${entry})`);
            const endSector = grain + Math.ceil(stored / SECTOR);
            if (overlaps(this.metadata, grain, endSector) || overlaps(tableRange, grain, endSector)) {
              fail(`${where}grain table ${index} entry ${entry} points into the header or the tables`);
            }
            mappedBytes += stored;
            if (mappedBytes > source.size) fail(`${where}the grain tables map more grains than the file holds`);
            if (!batch.extends(lba, grain, this)) {
              const job = this.flush(batch, base);
              if (job) yield job;
              signal?.throwIfAborted();
            }
            batch.add(lba, grain, bytes);
          }
        }
        i += run;
      }
    }
    const job = this.flush(batch, base);
    if (job) yield job;
  }

  /** Whether a grain at `grain` (file sector) may join the batch: one read, one extent. */
  canJoin(batch: GrainBatch, lba: number, grain: number): boolean {
    if (lba !== batch.lbaEnd || batch.bytes + this.grainBytes > READ_BYTES) return false;
    const last = batch.grains[batch.grains.length - 1]!;
    if (!this.compressed) return grain === last + this.header.grainSectors;
    // Compressed grains lie in increasing order with small gaps (a grain table and its marker
    // between them in a stream); reading a gap costs less than another read.
    return grain > last && grain - last <= 4 * this.header.grainSectors + 8 && (grain - batch.grains[0]!) * SECTOR <= READ_BYTES;
  }

  private flush(batch: GrainBatch, base: number): Job | undefined {
    if (batch.grains.length === 0) return undefined;
    const lba = batch.lba;
    const grains = batch.grains;
    const bytes = batch.bytes;
    batch.clear();
    const offset = base + lba * SECTOR;
    if (!this.compressed) {
      return async () => [await readExtent(this.source, offset, grains[0]! * SECTOR, bytes)];
    }
    return async () => [await this.readCompressed(offset, lba, grains, bytes)];
  }

  /**
   * Grains `grains` (file sectors of their markers) holding the disk from sector `lba` on, in one
   * read: each is "u64 lba, u32 size, deflated data" (spec § "Grain Marker"), its lba checked
   * against the table's, and the run inflated on a worker, each grain to exactly one grain.
   */
  private async readCompressed(offset: number, lba: number, grains: readonly number[], bytes: number): Promise<Extent> {
    const { source, where, grainBytes } = this;
    const first = grains[0]! * SECTOR;
    const lastAt = grains[grains.length - 1]! * SECTOR;
    // The last grain's length is in its marker: read as far as its largest possible data, rather
    // than a second time once the marker is known.
    const maxCompressed = 2 * grainBytes;
    // Read into a reused buffer, given back once the run is inflated: a fresh one per run would
    // leave the whole compressed file behind as garbage.
    const read = await readPooled(source, first, Math.min(lastAt + GRAIN_MARKER_BYTES + maxCompressed, source.size) - first);
    const span = read.data;
    try {
      const pieces: number[] = [];
      for (let g = 0; g < grains.length; g++) {
        const at = grains[g]! * SECTOR;
        const expectedLba = lba + g * this.header.grainSectors;
        const markerLba = span.readBigUInt64LE(at - first);
        if (markerLba !== BigInt(expectedLba))
          fail(`${where}the grain at file sector ${grains[g]} is marked for disk sector ${markerLba}, but its grain table says ${expectedLba}`);
        const size = span.readUInt32LE(at - first + 8);
        // Deflate never grows data by more than a few bytes per 16 KiB block.
        if (size === 0 || size > maxCompressed) fail(`${where}the grain for disk sector ${expectedLba} claims ${size} compressed bytes`);
        const end = at + GRAIN_MARKER_BYTES + size;
        if (end > source.size) fail(`${where}the grain for disk sector ${expectedLba} runs past the end of the file`);
        const next = grains[g + 1];
        if (next !== undefined && end > next * SECTOR) fail(`${where}the grain for disk sector ${expectedLba} runs into the next grain`);
        pieces.push(at + GRAIN_MARKER_BYTES - first, size);
      }

      let inflated: Inflated;
      try {
        inflated = await inflatePieces(span, pieces, grainBytes);
      } catch (error) {
        if (!(error instanceof InflateFailure)) throw error;
        const at = lba + error.index * this.header.grainSectors;
        return fail(
          error.tooLarge
            ? `${where}the grain for disk sector ${at} inflates past its ${grainBytes} bytes`
            : `${where}the grain for disk sector ${at} is not valid deflate data (${error.message})`,
        );
      }
      const { output, lengths, release } = inflated;
      for (const [g, length] of lengths.entries()) {
        const at = lba + g * this.header.grainSectors;
        // Only a grain crossing the extent's capacity may come out short (a stream's last grain).
        const final = at + this.header.grainSectors > this.header.capacity;
        if (final ? length > grainBytes : length !== grainBytes) {
          release();
          fail(`${where}the grain for disk sector ${at} inflates to ${length} bytes, not ${grainBytes}`);
        }
      }
      // The last grain may hold more than the extent's (or the descriptor's) end keeps.
      return { offset, data: output.length > bytes ? output.subarray(0, bytes) : output, release };
    } finally {
      read.release?.();
    }
  }
}

/** Grains adjacent on the disk (and close in the file) gathered for one read. */
class GrainBatch {
  lba = 0;
  lbaEnd = 0;
  bytes = 0;
  grains: number[] = [];

  extends(lba: number, grain: number, extent: SparseExtent): boolean {
    return this.grains.length === 0 || extent.canJoin(this, lba, grain);
  }

  add(lba: number, grain: number, bytes: number): void {
    if (this.grains.length === 0) this.lba = lba;
    this.grains.push(grain);
    this.bytes += bytes;
    this.lbaEnd = lba + Math.ceil(bytes / SECTOR);
  }

  clear(): void {
    this.grains = [];
    this.bytes = 0;
  }
}

/**
 * Opens a hosted sparse extent: checks its header (or its footer, when the header defers the
 * grain directory to the end of a stream) and every table location before any data is read.
 */
async function openSparse(source: ByteSource, where: string): Promise<SparseExtent> {
  if (source.size < SECTOR) fail(`${where}truncated file: no room for a VMDK header`);
  let header = parseSparseHeader(await source.read(0, SECTOR), where);
  const fileSectors = Math.floor(source.size / SECTOR);
  const metadata: Range[] = [[0, 1]];

  if (header.gdOffset === "end") {
    // Spec § "The Footer": a stream's header cannot know where its GD will land, so the real
    // header follows the grains: footer marker, footer (a copy of the header with gdOffset
    // filled in), end-of-stream marker — the file's last three sectors.
    if (source.size < 4 * SECTOR) fail(`${where}truncated file: no room for a VMDK footer`);
    const tail = await source.read(source.size - 3 * SECTOR, 3 * SECTOR);
    const footerMarker = tail.subarray(0, SECTOR);
    const eos = tail.subarray(2 * SECTOR);
    if (footerMarker.readUInt32LE(8) !== 0 || footerMarker.readUInt32LE(12) !== MARKER_FOOTER)
      fail(`${where}the VMDK stream has no footer marker before its last two sectors`);
    if (eos.readBigUInt64LE(0) !== 0n || eos.readUInt32LE(8) !== 0 || eos.readUInt32LE(12) !== MARKER_EOS)
      fail(`${where}the VMDK stream does not end with an end-of-stream marker`);
    const footer = parseSparseHeader(tail.subarray(SECTOR, 2 * SECTOR), `${where}footer: `);
    if (footer.gdOffset === "end") fail(`${where}the VMDK footer does not say where the grain directory is`);
    if (footer.capacity !== header.capacity || footer.grainSectors !== header.grainSectors || footer.flags !== header.flags) {
      fail(`${where}the VMDK footer disagrees with the header`);
    }
    header = footer;
    metadata.push([fileSectors - 3, fileSectors]);
  }
  const gdOffset = header.gdOffset as number;

  const { capacity, grainSectors, gtesPerGt, flags } = header;
  if (!Number.isSafeInteger(capacity) || capacity === 0) fail(`${where}the VMDK capacity ${capacity} sectors is not a disk size`);
  if (capacity * SECTOR > DISK_LIMITS.virtualSize)
    fail(`${where}the VMDK capacity of ${capacity * SECTOR} bytes exceeds the ${DISK_LIMITS.virtualSize} bytes Kiln accepts`);
  if (!Number.isSafeInteger(grainSectors) || grainSectors < 1 || (grainSectors & (grainSectors - 1)) !== 0)
    fail(`${where}the VMDK grain size ${grainSectors} sectors is not a power of two`);
  if (grainSectors * SECTOR > MAX_GRAIN_BYTES) fail(`${where}the VMDK grain size ${grainSectors * SECTOR} bytes exceeds ${MAX_GRAIN_BYTES}`);
  if (gtesPerGt < 1 || gtesPerGt > MAX_GTES_PER_GT) fail(`${where}the VMDK grain tables' ${gtesPerGt} entries are out of range`);
  if (flags & FLAG_COMPRESSED) {
    // Without markers a compressed grain's length is unknown (spec: streams always carry them).
    if (!(flags & FLAG_MARKERS)) fail(`${where}VMDK compressed grains without markers are not supported`);
    if (header.compressAlgorithm !== COMPRESSION_DEFLATE) fail(`${where}VMDK compression algorithm ${header.compressAlgorithm} is not supported`);
  } else {
    if (flags & FLAG_MARKERS) fail(`${where}VMDK markers without compressed grains are not supported`);
    if (header.compressAlgorithm !== 0)
      fail(`${where}the VMDK header names compression algorithm ${header.compressAlgorithm} but its grains are not compressed`);
  }

  const within = (start: number, sectors: number) => Number.isSafeInteger(start) && start >= 1 && start + sectors <= fileSectors;
  if (header.descriptorSize > 0) {
    if (!within(header.descriptorOffset, header.descriptorSize)) fail(`${where}the VMDK embedded descriptor lies outside the file`);
    if (header.descriptorSize * SECTOR > MAX_DESCRIPTOR_BYTES) fail(`${where}the VMDK embedded descriptor of ${header.descriptorSize} sectors is too large`);
    metadata.push([header.descriptorOffset, header.descriptorOffset + header.descriptorSize]);
    const text = (await source.read(header.descriptorOffset * SECTOR, header.descriptorSize * SECTOR)).toString("utf8");
    const nul = text.indexOf("\0");
    refuseParent(parseDescriptor(nul < 0 ? text : text.slice(0, nul), where).fields, where);
  }

  const gdEntries = Math.ceil(capacity / (grainSectors * gtesPerGt));
  const gdSectors = Math.ceil((gdEntries * 4) / SECTOR);
  if (!within(gdOffset, gdSectors)) fail(`${where}the VMDK grain directory lies outside the file`);
  if (overlaps(metadata, gdOffset, gdOffset + gdSectors)) fail(`${where}the VMDK grain directory overlaps the header or descriptor`);
  metadata.push([gdOffset, gdOffset + gdSectors]);
  // The redundant GD is not read, but a grain or table inside it would be a lie all the same.
  if (flags & FLAG_REDUNDANT_GD && header.rgdOffset > 0 && Number.isSafeInteger(header.rgdOffset))
    metadata.push([header.rgdOffset, header.rgdOffset + gdSectors]);

  return new SparseExtent(source, where, { ...header, gdOffset }, metadata, capacity);
}

// ---------------------------------------------------------------------------------------------
// Descriptors (spec § "The Descriptor File")

interface DescriptorExtent {
  access: string;
  sectors: number;
  type: string;
  name?: string;
  offset: number; // sectors, FLAT and VMFS only
}

interface Descriptor {
  fields: Map<string, string>;
  extents: DescriptorExtent[];
}

// "RW 4192256 SPARSE "disk-s001.vmdk"", "RW 2048 FLAT "disk-flat.vmdk" 0", "RW 1024 ZERO".
const EXTENT_LINE = /^(RW|RDONLY|NOACCESS)\s+(\d+)\s+([A-Za-z]+)(?:\s+"([^"]*)"(?:\s+(\d+))?)?\s*$/;
const FIELD_LINE = /^([A-Za-z0-9_.]+)\s*=\s*(.*)$/;

function parseDescriptor(text: string, where: string): Descriptor {
  const fields = new Map<string, string>();
  const extents: DescriptorExtent[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (/^(RW|RDONLY|NOACCESS)\s/.test(line)) {
      const match = EXTENT_LINE.exec(line);
      if (!match) return fail(`${where}the VMDK descriptor has an extent line it cannot read: ${line.slice(0, 100)}`);
      if (extents.length >= MAX_EXTENTS) fail(`${where}the VMDK descriptor names more than ${MAX_EXTENTS} extents`);
      extents.push({
        access: match[1]!,
        sectors: Number(match[2]),
        type: match[3]!.toUpperCase(),
        name: match[4],
        offset: match[5] === undefined ? 0 : Number(match[5]),
      });
      continue;
    }
    const field = FIELD_LINE.exec(line);
    if (field) fields.set(field[1]!, field[2]!.trim().replace(/^"(.*)"$/, "$1"));
  }
  return { fields, extents };
}

/** A differencing disk only makes sense over its parent, which Kiln is not given. */
function refuseParent(fields: Map<string, string>, where: string): void {
  const parent = fields.get("parentCID");
  if ((parent !== undefined && parent.toLowerCase() !== "ffffffff") || fields.has("parentFileNameHint")) {
    fail(`${where}VMDK differencing disks (with a parent) are not supported`);
  }
}

/** An extent file's name as written: a plain name beside the descriptor, nothing more. */
function checkExtentName(name: string | undefined, index: number): string {
  if (!name) return fail(`VMDK extent ${index} names no file`);
  // eslint-disable-next-line no-control-regex
  if (/[/\\\x00-\x1f]/.test(name) || name === "." || name === ".." || name.includes("..")) {
    fail(`VMDK extent ${index} names "${name.slice(0, 100)}", which is not a plain file name beside the descriptor`);
  }
  return name;
}

async function openDescriptor(source: ByteSource, companion?: (name: string) => Promise<ByteSource>): Promise<Part[]> {
  if (source.size > MAX_DESCRIPTOR_BYTES) fail("not a VMDK file: no sparse extent header, and too large for a descriptor");
  const bytes = await source.read(0, source.size);
  // Writers pad a descriptor to whole sectors with NULs, and the text ends at the first. What
  // follows is not always zeros: qemu rewrites the CID in place without clearing, so a shorter
  // CID leaves the old text's last bytes after the NUL. Binary is told by control bytes in the text.
  const nul = bytes.indexOf(0);
  const text = bytes.subarray(0, nul < 0 ? bytes.length : nul).toString("utf8");
  if (/[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(text)) fail("not a VMDK file: no sparse extent header, and not a text descriptor");
  // VMware writes "# Disk DescriptorFile" first; some writers start at "version=".
  const firstLine = text
    .split("\n")
    .map((line) => line.trim())
    .find((line) => (line !== "" && !line.startsWith("#")) || /^#\s*Disk DescriptorFile/i.test(line));
  if (!firstLine || !(/^#\s*Disk DescriptorFile/i.test(firstLine) || /^version\s*=/.test(firstLine)))
    fail("not a VMDK file: no sparse extent header, and not a descriptor");
  const { fields, extents } = parseDescriptor(text, "");
  refuseParent(fields, "");
  if (extents.length === 0) fail("the VMDK descriptor names no extents");

  const opened = new Map<string, ByteSource>();
  const open = async (name: string) => {
    if (!companion) return fail(`the VMDK descriptor names the extent file "${name}", but Kiln was given no files beside it`);
    let file = opened.get(name);
    if (!file) {
      file = await companion(name);
      opened.set(name, file);
    }
    return file;
  };

  const parts: Part[] = [];
  let total = 0;
  for (const [i, extent] of extents.entries()) {
    const { sectors, type } = extent;
    if (!Number.isSafeInteger(sectors) || sectors === 0) fail(`VMDK extent ${i} has no size`);
    total += sectors;
    if (total * SECTOR > DISK_LIMITS.virtualSize) fail(`the VMDK extents add up to more than the ${DISK_LIMITS.virtualSize} bytes Kiln accepts`);
    if (extent.access === "NOACCESS") fail(`VMDK extent ${i} is NOACCESS, so its data cannot be read`);
    if (type === "ZERO") {
      parts.push({ sectors, jobs: async function* () {} });
    } else if (type === "FLAT" || type === "VMFS") {
      const name = checkExtentName(extent.name, i);
      const file = await open(name);
      if (!Number.isSafeInteger(extent.offset) || (extent.offset + sectors) * SECTOR > file.size) {
        fail(`VMDK extent ${i} ("${name}") holds ${file.size} bytes, fewer than the descriptor's ${sectors} sectors from sector ${extent.offset}`);
      }
      parts.push(flatPart(file, extent.offset * SECTOR, sectors));
    } else if (type === "SPARSE") {
      const name = checkExtentName(extent.name, i);
      const where = `VMDK extent ${i} ("${name}"): `;
      const file = await open(name);
      if (file.size < 4 || (await file.read(0, 4)).readUInt32LE(0) !== SPARSE_MAGIC) fail(`${where}not a VMDK sparse extent`);
      const sparse = await openSparse(file, where);
      if (sparse.sectors < sectors) fail(`${where}its capacity of ${sparse.sectors} sectors is less than the descriptor's ${sectors}`);
      parts.push(sparse.limitedTo(sectors));
    } else {
      fail(`VMDK extent type ${type} is not supported`);
    }
  }
  return parts;
}

/** A FLAT extent: the disk's bytes as they are, read in large pieces with zero runs skipped. */
function flatPart(file: ByteSource, start: number, sectors: number): Part {
  return {
    sectors,
    async *jobs(base) {
      const length = sectors * SECTOR;
      for (let at = 0; at < length; at += READ_BYTES) {
        const size = Math.min(READ_BYTES, length - at);
        const offset = base + at;
        yield async () => nonZeroRuns(offset, await file.read(start + at, size));
      }
    },
  };
}

/** The data's runs that are not zeros, at ZERO_PROBE granularity (each compare is one memcmp). */
function nonZeroRuns(offset: number, data: Buffer): Extent[] {
  const extents: Extent[] = [];
  let runStart = -1;
  for (let at = 0; at < data.length; at += ZERO_PROBE) {
    const piece = data.subarray(at, at + ZERO_PROBE);
    const zero = piece.equals(ZEROS.subarray(0, piece.length));
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      extents.push({ offset: offset + runStart, data: data.subarray(runStart, at) });
      runStart = -1;
    }
  }
  if (runStart >= 0) extents.push({ offset: offset + runStart, data: data.subarray(runStart) });
  return extents;
}
