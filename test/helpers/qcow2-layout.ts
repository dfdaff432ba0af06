// Where a QCOW2 file's clusters lie, read the simple way (tests patch files by it): each L2
// entry's own position, and the host bytes it names.

export interface L2Entry {
  cluster: number;
  /** Where the entry itself lies in the file. */
  at: number;
  compressed: boolean;
  /** Host offset (standard) or byte offset (compressed). */
  host: number;
  /** Stored bytes of a compressed cluster. */
  stored: number;
}

/** The allocated L2 entries of a qcow2 file, read independently of the reader under test. */
export function qcowEntries(bytes: Buffer): { clusterSize: number; l1Offset: number; l1: number[]; entries: L2Entry[] } {
  const clusterBits = bytes.readUInt32BE(20);
  const clusterSize = 2 ** clusterBits;
  const l1Size = bytes.readUInt32BE(36);
  const l1Offset = Number(bytes.readBigUInt64BE(40));
  const entries: L2Entry[] = [];
  const l1: number[] = [];
  for (let i = 0; i < l1Size; i++) {
    const l2 = Number(bytes.readBigUInt64BE(l1Offset + i * 8) & 0x00fffffffffffe00n);
    l1.push(l2);
    if (!l2) continue;
    for (let j = 0; j < clusterSize / 8; j++) {
      const at = l2 + j * 8;
      const entry = bytes.readBigUInt64BE(at);
      if (entry === 0n) continue;
      const cluster = i * (clusterSize / 8) + j;
      if (entry & (1n << 62n)) {
        const shift = BigInt(62 - (clusterBits - 8));
        const host = Number(entry & ((1n << shift) - 1n));
        const sectors = Number((entry >> shift) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
        entries.push({ cluster, at, compressed: true, host, stored: host - (host % 512) + sectors * 512 - host });
      } else {
        entries.push({ cluster, at, compressed: false, host: Number(entry & 0x00fffffffffffe00n), stored: clusterSize });
      }
    }
  }
  return { clusterSize, l1Offset, l1, entries };
}
