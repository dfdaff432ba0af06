// EC2's UEFI data: what GetInstanceUefiData answers and RegisterImage's UefiData takes, the
// base64 of a blob in AWS's own format, as AWS's python-uefivars reads and writes it
// (pyuefivars/aws.py, aws_file.py; all integers little-endian):
//
//   "AMZNUEFI"      8 bytes of magic
//   crc             UINT32: CRC-32C of everything after it
//   version         UINT32: 0
//   zlib stream     deflate, holding:
//     count         UINT64
//     per variable  name (UINT64 length + UTF-8), data (UINT64 length + bytes), the vendor GUID
//                   (16 bytes as EFI_GUID stores it), attributes (UINT32), and for a time-based
//                   authenticated variable its EFI_TIME (16 bytes, zeros for none) and its digest
//                   (UINT64 length + bytes, 32 zeros for none)
//
// python-uefivars and EC2 deflate against a preset dictionary of their own: the stream's zlib
// header sets FDICT and names it by its Adler-32. Kiln does not carry that dictionary. It writes
// the stream with none (FDICT clear), which python-uefivars' decompressobj(zdict=...) inflates
// as it is, since zlib asks for a dictionary only when the header names one. A blob that names
// one is refused by name: Kiln cannot read it, and says why rather than calling it damaged.
//
// Decoding is bounded before anything is allocated: the text's length, the inflated size (a
// zlib bomb stops there), the count, every length field against what is left.
import { Crc32c } from "@aws-sdk/checksums/crc";
import { deflateSync, inflateSync } from "node:zlib";
import {
  UefiVariableStoreError,
  EFI_TIME_BYTES,
  GUID_BYTES,
  MAX_DIGEST_BYTES,
  checkVariables,
  guidFromBytes,
  guidToBytes,
  isTimeAuthenticated,
  variableKey,
  type UefiVariable,
} from "./variable.js";

const fail = (reason: string) => new UefiVariableStoreError(reason);

const MAGIC = Buffer.from("AMZNUEFI", "latin1");
const HEADER_BYTES = 16;
const VERSION = 0;
/** The Adler-32 by which blobs from EC2 and python-uefivars name their preset dictionary. */
const EC2_DICTIONARY_ID = "6bb7d9f7";
/** What python-uefivars writes for a time-based authenticated variable with no digest. */
const EMPTY_DIGEST_BYTES = 32;
/** The smallest record: an empty name and empty data (their two lengths), a GUID, attributes. */
const MIN_RECORD_BYTES = 8 + 8 + GUID_BYTES + 4;

/** What Kiln decodes, and so what it encodes: it never makes UEFI data it would not read back. */
export const AWS_UEFI_DATA_LIMITS = {
  /** Base64 characters decoded. RegisterImage takes at most 64,000 (the model's ImageUefiDataRequest). */
  encodedChars: 1024 * 1024,
  /** Bytes the zlib stream may inflate to: four times the 256 KiB variable region of OVMF_VARS_4M.fd. */
  inflatedBytes: 1024 * 1024,
  variables: 8192,
  /** A name's UTF-8 bytes. */
  nameBytes: 1024,
  /** A variable's data: no more than that whole variable region. */
  dataBytes: 256 * 1024,
};

async function crc32c(bytes: Buffer): Promise<number> {
  const crc = new Crc32c();
  crc.update(bytes);
  return Buffer.from(await crc.digest()).readUInt32BE(0);
}

/** The variables as EC2's UEFI data: base64 text. */
export async function encodeAwsUefiData(vars: readonly UefiVariable[]): Promise<string> {
  checkVariables(vars);
  const limits = AWS_UEFI_DATA_LIMITS;
  if (vars.length > limits.variables) throw fail(`${vars.length} variables are more than the ${limits.variables} Kiln reads back`);
  for (const v of vars) {
    if (Buffer.byteLength(v.name) > limits.nameBytes) throw fail(`a variable's name is over ${limits.nameBytes} bytes (${v.name.slice(0, 40)}...)`);
    if (v.data.length > limits.dataBytes) throw fail(`variable ${v.name} has ${v.data.length} bytes of data, over ${limits.dataBytes}`);
  }
  const parts: Buffer[] = [];
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    parts.push(b);
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n >>> 0);
    parts.push(b);
  };
  const sized = (bytes: Buffer) => {
    u64(bytes.length);
    parts.push(bytes);
  };
  u64(vars.length);
  for (const v of vars) {
    sized(Buffer.from(v.name, "utf8"));
    sized(v.data);
    parts.push(guidToBytes(v.guid));
    u32(v.attributes);
    if (isTimeAuthenticated(v.attributes)) {
      parts.push(v.timestamp ?? Buffer.alloc(EFI_TIME_BYTES));
      sized(v.digest && v.digest.length > 0 ? v.digest : Buffer.alloc(EMPTY_DIGEST_BYTES));
    }
  }
  const raw = Buffer.concat(parts);
  if (raw.length > AWS_UEFI_DATA_LIMITS.inflatedBytes)
    throw fail(`the variables take ${raw.length} bytes, over the ${AWS_UEFI_DATA_LIMITS.inflatedBytes} UEFI data holds`);
  const body = Buffer.concat([Buffer.alloc(4), deflateSync(raw, { level: 9 })]);
  body.writeUInt32LE(VERSION, 0);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(await crc32c(body));
  return Buffer.concat([MAGIC, crc, body]).toString("base64");
}

/** Base64 as python's b64decode takes it by default: whitespace and line breaks are dropped. */
function fromBase64(text: string): Buffer {
  if (text.length > AWS_UEFI_DATA_LIMITS.encodedChars)
    throw fail(`the UEFI data is ${text.length} characters; Kiln reads at most ${AWS_UEFI_DATA_LIMITS.encodedChars}`);
  const compact = text.replace(/\s+/g, "");
  if (compact.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(compact)) throw fail("the UEFI data is not base64");
  return Buffer.from(compact, "base64");
}

/** The variables EC2's UEFI data holds, in its order. */
export async function decodeAwsUefiData(text: string): Promise<UefiVariable[]> {
  const blob = fromBase64(text);
  if (blob.length < HEADER_BYTES || !blob.subarray(0, 8).equals(MAGIC)) throw fail("not EC2 UEFI data: no AMZNUEFI magic");
  const body = blob.subarray(12);
  if ((await crc32c(body)) !== blob.readUInt32LE(8)) throw fail("the UEFI data's CRC-32C does not match: it is damaged or incomplete");
  const version = body.readUInt32LE(0);
  if (version !== VERSION) throw fail(`UEFI data version ${version} is not supported (only ${VERSION})`);

  const zlibStream = body.subarray(4);
  // RFC 1950 §2.2: FDICT is bit 5 of the second byte, and the dictionary's Adler-32 follows.
  if (zlibStream.length >= 6 && (zlibStream[1]! & 0x20) !== 0) {
    const id = zlibStream.readUInt32BE(2).toString(16).padStart(8, "0");
    const whose = id === EC2_DICTIONARY_ID ? "EC2's own preset dictionary" : "a preset dictionary";
    throw fail(`the UEFI data is deflated against ${whose} (Adler-32 0x${id}), which Kiln does not carry; Kiln reads UEFI data deflated with none`);
  }
  let raw: Buffer;
  try {
    raw = inflateSync(zlibStream, { maxOutputLength: AWS_UEFI_DATA_LIMITS.inflatedBytes });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ERR_BUFFER_TOO_LARGE") throw fail(`the UEFI data inflates past ${AWS_UEFI_DATA_LIMITS.inflatedBytes} bytes`);
    throw fail(`the UEFI data's zlib stream is damaged (${(error as Error).message})`);
  }
  return parseVariables(raw);
}

function parseVariables(raw: Buffer): UefiVariable[] {
  let at = 0;
  const need = (n: number, what: string) => {
    if (n > raw.length - at) throw fail(`${what} runs past the end of the UEFI data (${raw.length} bytes inflated)`);
  };
  const u64 = (what: string) => {
    need(8, what);
    const value = raw.readBigUInt64LE(at);
    at += 8;
    // Every length is checked against what is left, so a value past 2^53 fails the same way.
    return value > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(value);
  };
  const take = (n: number, what: string) => {
    need(n, what);
    const bytes = raw.subarray(at, at + n);
    at += n;
    return bytes;
  };
  const sized = (what: string, max = Number.MAX_SAFE_INTEGER) => {
    const length = u64(`${what}'s length`);
    if (length > max) throw fail(`${what} is ${length} bytes; Kiln reads at most ${max}`);
    return take(length, what);
  };

  const count = u64("the variable count");
  if (count > AWS_UEFI_DATA_LIMITS.variables) throw fail(`the UEFI data counts ${count} variables; Kiln reads at most ${AWS_UEFI_DATA_LIMITS.variables}`);
  if (count * MIN_RECORD_BYTES > raw.length - at) throw fail(`the UEFI data counts ${count} variables, more than its ${raw.length} bytes can hold`);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  const vars: UefiVariable[] = [];
  const seen = new Set<string>();
  for (let n = 0; n < count; n++) {
    const what = `variable ${n}`;
    let name: string;
    try {
      name = utf8.decode(sized(`${what}'s name`, AWS_UEFI_DATA_LIMITS.nameBytes));
    } catch (error) {
      if (error instanceof UefiVariableStoreError) throw error;
      throw fail(`${what}'s name is not UTF-8`);
    }
    if (name.length === 0 || name.includes("\0")) throw fail(`${what} has an empty name or a NUL in it`);
    const data = Buffer.from(sized(`${what}'s data`, AWS_UEFI_DATA_LIMITS.dataBytes));
    const guid = guidFromBytes(take(GUID_BYTES, `${what}'s GUID`));
    need(4, `${what}'s attributes`);
    const attributes = raw.readUInt32LE(at);
    at += 4;
    const variable: UefiVariable = { guid, name, attributes, data };
    if (isTimeAuthenticated(attributes)) {
      const timestamp = take(EFI_TIME_BYTES, `${what}'s timestamp`);
      const digest = sized(`${what}'s digest`, MAX_DIGEST_BYTES);
      if (timestamp.some((b) => b !== 0)) variable.timestamp = Buffer.from(timestamp);
      if (digest.some((b) => b !== 0)) variable.digest = Buffer.from(digest);
    }
    const key = variableKey(variable);
    if (seen.has(key)) throw fail(`the UEFI data holds variable ${name} under ${guid} twice`);
    seen.add(key);
    vars.push(variable);
  }
  // Bytes after the last variable are ignored, as python-uefivars ignores them.
  return vars;
}
