// CRC-32, CRC-32C and CRC-64/NVME written out here, from their published parameters, so that
// expected values in the tests do not come from the code Kiln itself uses (node:zlib's crc32,
// @aws-sdk/checksums). Each is checked at load against published values: the CRC of the ASCII
// bytes "123456789" (the catalogues' "check"): CRC-32 (zlib, S3's CRC32) 0xCBF43926; CRC-32C
// (Castagnoli: iSCSI, btrfs, VHDX, S3's CRC32C) 0xE3069283, and RFC 3720 appendix B.4's 32
// bytes of zeros 0x8A9136AA and of ones 0x62A8AB43; CRC-64/NVME (S3's CRC64NVME) 0xAE8B14860A799888.

/** A reflected 32-bit CRC's table for `polynomial` (reversed form). */
const table32 = (polynomial: number) => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ polynomial : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
};
const reflected32 = (table: Uint32Array, data: Uint8Array) => {
  let crc = 0xffffffff;
  for (const byte of data) crc = table[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
};

/** CRC-32 (ISO-HDLC, zlib's): polynomial 0x04C11DB7 (0xEDB88320 reversed), initial and final XOR 0xFFFFFFFF. */
const CRC32_TABLE = table32(0xedb88320);
export const crc32 = (data: Uint8Array) => reflected32(CRC32_TABLE, data);

/** As S3 sends it (x-amz-checksum-crc32): the big-endian CRC, base64. */
export const crc32Base64 = (data: Uint8Array) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32(data));
  return out.toString("base64");
};

/** CRC-32C: polynomial 0x1EDC6F41 (0x82F63B78 reversed), initial and final XOR 0xFFFFFFFF. */
const CRC32C_TABLE = table32(0x82f63b78);
export const crc32c = (data: Uint8Array) => reflected32(CRC32C_TABLE, data);

/** As S3 sends it (x-amz-checksum-crc32c): the big-endian CRC, base64. */
export const crc32cBase64 = (data: Uint8Array) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(crc32c(data));
  return out.toString("base64");
};

/** Reflected CRC-64/NVME: polynomial 0xAD93D23594C93659 (0x9A6C9329AC4BC9B5 reversed), initial and final XOR all ones. */
const CRC64_TABLE = (() => {
  const table: bigint[] = [];
  for (let n = 0n; n < 256n; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ 0x9a6c9329ac4bc9b5n : c >> 1n;
    table.push(c);
  }
  return table;
})();
const ONES64 = 0xffffffffffffffffn;

export function crc64nvme(data: Uint8Array): bigint {
  let crc = ONES64;
  for (const byte of data) crc = CRC64_TABLE[Number((crc ^ BigInt(byte)) & 0xffn)]! ^ (crc >> 8n);
  return crc ^ ONES64;
}

/** As S3 sends it (x-amz-checksum-crc64nvme): the big-endian CRC, base64. */
export const crc64nvmeBase64 = (data: Uint8Array) => {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(crc64nvme(data));
  return out.toString("base64");
};

const CHECK = Buffer.from("123456789", "ascii");
const expect = (name: string, got: number | bigint, want: number | bigint) => {
  if (got !== want) throw new Error(`the tests' ${name} gives ${got.toString(16)}, not the published ${want.toString(16)}`);
};
expect("CRC-32 of 123456789", crc32(CHECK), 0xcbf43926);
expect("CRC-32C of 123456789", crc32c(CHECK), 0xe3069283);
expect("CRC-32C of 32 zero bytes", crc32c(Buffer.alloc(32)), 0x8a9136aa);
expect("CRC-32C of 32 0xFF bytes", crc32c(Buffer.alloc(32, 0xff)), 0x62a8ab43);
expect("CRC-64/NVME of 123456789", crc64nvme(CHECK), 0xae8b14860a799888n);
