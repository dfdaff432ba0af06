// QCOW2, versions 2 and 3 (qemu's docs/interop/qcow2.txt; section names below are that file's).
// The active L1 table maps the disk to L2 tables, one cluster each, which map it to data
// clusters, compressed clusters, zero clusters or nothing. Only the disk's own data is read: no
// backing file, no encryption, no external data file, no internal snapshots (the active L1 table
// is the disk), no subclusters. One window of the L1 table and one L2 table are held at a time.
import { DISK_LIMITS, type DiskImage, type DiskImageOpener } from "./image.js";
import { DiskImageError } from "./errors.js";
import { readExtents, type Unit } from "./read-ahead.js";

const MAGIC = 0x514649fb; // "QFI\xfb"
const V2_HEADER_BYTES = 72;
const V3_HEADER_BYTES = 104;
/** qcow2.txt "Header", cluster_bits: at least 9; it notes a 2 MB implementation limit, which Kiln keeps. */
const MIN_CLUSTER_BITS = 9;
const MAX_CLUSTER_BITS = 21;
/** The largest active L1 table accepted (32 MiB, the limit qcow2.txt notes under "size"). */
const MAX_L1_ENTRIES = (32 * 1024 * 1024) / 8;
/** L1 entries read at a time. */
const L1_WINDOW = 8192;

/** incompatible_features bits (qcow2.txt "Header", bytes 72-79). */
const INCOMPAT_DIRTY = 1n << 0n;
const INCOMPAT_CORRUPT = 1n << 1n;
const INCOMPAT_DATA_FILE = 1n << 2n;
const INCOMPAT_COMPRESSION = 1n << 3n;
const INCOMPAT_EXTENDED_L2 = 1n << 4n;
const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTENDED_L2;

const TWO_32 = 2 ** 32;
const fail = (reason: string) => new DiskImageError(reason);

/** Bits 9-55 of a big-endian L1/L2 entry: the host offset of a table or standard cluster. */
function offsetBits(table: Buffer, at: number): number {
  return (table.readUInt32BE(at) & 0x00ffffff) * TWO_32 + ((table.readUInt32BE(at + 4) & 0xfffffe00) >>> 0);
}

export const openQcow2: DiskImageOpener = async (source) => {
  if (source.size < V2_HEADER_BYTES) throw fail(`the file is ${source.size} bytes, too small for a QCOW2 header`);
  const head = await source.read(0, Math.min(source.size, V3_HEADER_BYTES + 8));
  if (head.readUInt32BE(0) !== MAGIC) throw fail("not a QCOW2 image (no QFI\\xfb magic)");
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) throw fail(`QCOW2 version ${version} is not supported (only 2 and 3)`);
  if (head.readBigUInt64BE(8) !== 0n) throw fail("QCOW2 images with a backing file are not supported");
  const clusterBits = head.readUInt32BE(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) throw fail(`QCOW2 cluster_bits ${clusterBits} is outside 9..21`);
  const clusterSize = 2 ** clusterBits;
  const sizeField = head.readBigUInt64BE(24);
  if (sizeField > BigInt(DISK_LIMITS.virtualSize)) throw fail(`QCOW2 virtual size ${sizeField} exceeds Kiln's limit of ${DISK_LIMITS.virtualSize} bytes`);
  const virtualSize = Number(sizeField);
  const cryptMethod = head.readUInt32BE(32);
  if (cryptMethod !== 0) throw fail(`encrypted QCOW2 images are not supported (crypt_method ${cryptMethod})`);
  const l1Size = head.readUInt32BE(36);
  const l1Offset = Number(head.readBigUInt64BE(40));

  if (version === 3) {
    if (head.length < V3_HEADER_BYTES) throw fail("the file is too small for a QCOW2 version 3 header");
    const headerLength = head.readUInt32BE(100);
    if (headerLength < V3_HEADER_BYTES || headerLength % 8 !== 0 || headerLength > clusterSize) throw fail(`QCOW2 header_length ${headerLength} is invalid`);
    const incompatible = head.readBigUInt64BE(72);
    // "An implementation must fail to open an image if an unknown bit is set."
    const unknown = incompatible & ~INCOMPAT_KNOWN;
    if (unknown) throw fail(`QCOW2 incompatible feature bits 0x${unknown.toString(16)} are not supported`);
    if (incompatible & INCOMPAT_CORRUPT) throw fail("the QCOW2 image is marked corrupt");
    if (incompatible & INCOMPAT_DATA_FILE) throw fail("QCOW2 images with an external data file are not supported");
    if (incompatible & INCOMPAT_EXTENDED_L2) throw fail("QCOW2 images with extended L2 entries (subclusters) are not supported");
    // compression_type (byte 104) is present only when header_length covers it.
    const compressionType = headerLength > V3_HEADER_BYTES && head.length > V3_HEADER_BYTES ? head[V3_HEADER_BYTES]! : 0;
    if (incompatible & INCOMPAT_COMPRESSION) {
      if (compressionType === 1) throw fail("QCOW2 zstd compression is not supported (only zlib)");
      throw fail(`QCOW2 compression type ${compressionType} is not supported (only zlib)`);
    }
    if (compressionType !== 0) throw fail(`QCOW2 compression type ${compressionType} is set without its feature bit`);
    // Bit 0 (dirty) only says the refcounts may be stale; Kiln reads no refcounts.
  }

  // One L2 table (a cluster) maps this many clusters.
  const l2Entries = clusterSize / 8;
  const clusters = Math.ceil(virtualSize / clusterSize);
  const l1Needed = Math.ceil(clusters / l2Entries);
  if (l1Needed > MAX_L1_ENTRIES) throw fail(`QCOW2 virtual size ${virtualSize} needs an L1 table larger than 32 MiB`);
  if (l1Size < l1Needed) throw fail(`QCOW2 L1 table has ${l1Size} entries, too few for the virtual size (${l1Needed})`);
  const l1Bytes = l1Needed * 8;
  if (l1Needed > 0) {
    if (!Number.isSafeInteger(l1Offset) || l1Offset % clusterSize !== 0) throw fail(`QCOW2 L1 table offset ${l1Offset} is not cluster-aligned`);
    if (l1Offset < clusterSize) throw fail("QCOW2 L1 table overlaps the header");
    if (l1Offset + l1Bytes > source.size) throw fail("QCOW2 L1 table lies outside the file");
  }

  const image: DiskImage = {
    format: "qcow2",
    virtualSize,
    extents: (signal) => readExtents(source, units(), signal),
  };

  /** True when [at, at + length) and the L1 table overlap. */
  const overlapsL1 = (at: number, length: number) => at < l1Offset + l1Bytes && l1Offset < at + length;

  async function* units(): AsyncGenerator<Unit> {
    // Each host cluster holds one L2 table or one cluster of data, so together they cannot map
    // more than the file holds: a table reused for many L1 entries (or data for many L2
    // entries) would otherwise turn a small file into terabytes of work.
    const fileClusters = Math.ceil(source.size / clusterSize);
    let l2Tables = 0;
    let storedBytes = 0;
    // Compressed descriptor layout (qcow2.txt "Compressed Clusters Descriptor"), x = 62 - (cluster_bits - 8).
    const csizeShift = BigInt(62 - (clusterBits - 8));
    const csizeMask = (1n << BigInt(clusterBits - 8)) - 1n;
    const coffsetMask = (1n << csizeShift) - 1n;
    // Clusters adjacent on the disk and in the file are passed on as one run.
    let run: { offset: number; length: number; host: number } | undefined;

    for (let l1Start = 0; l1Start < l1Needed; l1Start += L1_WINDOW) {
      const count = Math.min(L1_WINDOW, l1Needed - l1Start);
      const l1 = await source.read(l1Offset + l1Start * 8, count * 8);
      for (let i = 0; i < count; i++) {
        const l1Index = l1Start + i;
        const l2Offset = offsetBits(l1, i * 8);
        if (l2Offset === 0) continue; // "the L2 table and all clusters described by this L2 table are unallocated"
        if (l2Offset % clusterSize !== 0) throw fail(`QCOW2 L1 entry ${l1Index} points at an unaligned L2 table`);
        if (l2Offset + clusterSize > source.size) throw fail(`QCOW2 L1 entry ${l1Index} points outside the file`);
        if (l2Offset < clusterSize) throw fail(`QCOW2 L1 entry ${l1Index} points at the header`);
        if (overlapsL1(l2Offset, clusterSize)) throw fail(`QCOW2 L1 entry ${l1Index} points at the L1 table`);
        if (++l2Tables > fileClusters) throw fail("QCOW2 L1 table reuses L2 tables");
        const l2 = await source.read(l2Offset, clusterSize);
        const first = l1Index * l2Entries;
        const entries = Math.min(l2Entries, clusters - first);
        for (let j = 0; j < entries; j++) {
          const cluster = first + j;
          const offset = cluster * clusterSize;
          const length = Math.min(clusterSize, virtualSize - offset);
          const hi = l2.readUInt32BE(j * 8);
          const lo = l2.readUInt32BE(j * 8 + 4);
          if (hi & 0x40000000) {
            // Bit 62: compressed. The offset is byte-granular; the stored data runs to the end of
            // the last of its 512-byte sectors, and may share that sector with the next cluster.
            const entry = (BigInt(hi & 0x3fffffff) << 32n) | BigInt(lo);
            const host = Number(entry & coffsetMask);
            const sectors = Number((entry >> csizeShift) & csizeMask) + 1;
            if (host < clusterSize) throw fail(`QCOW2 compressed cluster ${cluster} points at the header`);
            if (host >= source.size) throw fail(`QCOW2 compressed cluster ${cluster} points outside the file`);
            if (overlapsL1(host, 1) || (host >= l2Offset && host < l2Offset + clusterSize)) throw fail(`QCOW2 compressed cluster ${cluster} points at a table`);
            if (clusterSize > DISK_LIMITS.compressedUnitBytes) throw fail(`QCOW2 compressed clusters of ${clusterSize} bytes are larger than Kiln inflates`);
            // A last sector cut short by the end of the file is read as far as the file goes.
            const stored = Math.min(host - (host % 512) + sectors * 512, source.size) - host;
            if (run) yield run;
            run = undefined;
            yield { offset, length, host, stored, inflated: clusterSize, name: `cluster ${cluster}` };
            continue;
          }
          // Standard cluster: bit 0 reads as zeros (version 3 only), else bits 9-55 locate it.
          const zero = (lo & 1) !== 0;
          if (zero && version === 2) throw fail(`QCOW2 L2 entry for cluster ${cluster} sets the zero flag, which version 2 does not have`);
          const host = offsetBits(l2, j * 8);
          if (zero) continue;
          if (host === 0) {
            // Offset 0 with bit 63 set means host offset 0, legal only with an external data file.
            if (hi & 0x80000000) throw fail(`QCOW2 cluster ${cluster} points at the header`);
            continue;
          }
          if (host % clusterSize !== 0) throw fail(`QCOW2 cluster ${cluster} points at an unaligned offset`);
          if (host + length > source.size) throw fail(`QCOW2 cluster ${cluster} points outside the file`);
          if (host < clusterSize) throw fail(`QCOW2 cluster ${cluster} points at the header`);
          if (overlapsL1(host, clusterSize) || host === l2Offset) throw fail(`QCOW2 cluster ${cluster} points at a table`);
          storedBytes += length;
          if (storedBytes > source.size) throw fail("QCOW2 clusters map more data than the file holds");
          if (run && run.offset + run.length === offset && run.host + run.length === host && run.length < DISK_LIMITS.extentBytes) {
            run.length += length;
          } else {
            if (run) yield run;
            run = { offset, length, host };
          }
        }
      }
    }
    if (run) yield run;
  }

  return image;
};
