// An edk2 variable store, as OVMF keeps one in its variable flash (the file a uefi instance's
// qemu gets as its second pflash drive, first copied from OVMF_VARS_4M.fd). The facts here are
// edk2's (MdePkg/Include/Pi/PiFirmwareVolume.h, MdeModulePkg/Include/Guid/VariableFormat.h and
// SystemNvDataGuid.h, OvmfPkg/Include/Fdf/VarStore.fdf.inc, SecurityPkg's AuthVariableLib):
//
//   EFI_FIRMWARE_VOLUME_HEADER   FileSystemGuid gEfiSystemNvDataFvGuid, "_FVH", a block map, a
//                                16-bit checksum over HeaderLength bytes
//   VARIABLE_STORE_HEADER        at HeaderLength: gEfiAuthenticatedVariableGuid, Size (the
//                                variable region, this header included), formatted, healthy
//   AUTHENTICATED_VARIABLE_HEADER StartId 0x55AA, State, Attributes, MonotonicCount, TimeStamp,
//     + UTF-16 name + data       PubKeyIndex, NameSize, DataSize, VendorGuid; each variable starts
//                                4-byte aligned; erased flash (0xFF) after the last
//   ...                          then, in OVMF's layout, an event-log block, the fault-tolerant-
//                                write working block and its spare area, to the end of the volume
//
// A variable's State only loses bits as flash does: VAR_ADDED (0x3F) is live; an update first
// marks the old copy VAR_IN_DELETED_TRANSITION (0x3E), adds the new copy, then marks the old one
// VAR_DELETED. edk2 reads a 0x3E copy only where no 0x3F copy of the variable exists (an update
// cut short), and so does Kiln; anything else (deleted, header-only) is skipped.
//
// edk2's AuthVariableLib keeps, for time-based authenticated variables, a digest of each signer
// in one variable, "certdb". Kiln reads certdb into the variables' own `digest` (the form EC2's
// UEFI data has) and writes a fresh certdb from them, as edk2 lays it out.
//
// Writing takes a template store (OVMF_VARS_4M.fd) and keeps everything of it but the variables:
// its volume header (so its checksum stays right), its size, and what OVMF keeps after the
// variable region. The template's fault-tolerant-write queue must be empty: a pending write there
// would be finished by OVMF at its next boot, over the variables Kiln wrote.
import {
  UefiVariableStoreError,
  ATTR,
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

/** PiFirmwareVolume.h: EFI_FIRMWARE_VOLUME_HEADER up to its block map. */
const FV_HEADER_FIXED_BYTES = 56;
const FV_BLOCK_MAP_ENTRY_BYTES = 8;
const FV_SIGNATURE = Buffer.from("_FVH", "latin1");
const FV_REVISION = 2;
/** SystemNvDataGuid.h: a volume of non-volatile data. */
const SYSTEM_NV_DATA_FV_GUID = "fff12b8d-7696-4c8b-a985-2747075b4f50";
/** SystemNvDataGuid.h: the fault-tolerant-write working block's signature. */
const WORKING_BLOCK_SIGNATURE_GUID = "9e58292b-7c68-497d-a0ce-6500fd9f1b95";
/** EFI_FAULT_TOLERANT_WORKING_BLOCK_HEADER: Signature, Crc, the valid bits, WriteQueueSize. */
const WORKING_BLOCK_HEADER_BYTES = 32;

/** VariableFormat.h: the two store signatures; OVMF's store is the authenticated one. */
const AUTHENTICATED_VARIABLE_GUID = "aaf32c78-947b-439a-a180-2e144ec37792";
const VARIABLE_GUID = "ddcf3616-3275-4164-98b6-fe85707ffe7d";
const VARIABLE_STORE_HEADER_BYTES = 28;
const VARIABLE_STORE_FORMATTED = 0x5a;
const VARIABLE_STORE_HEALTHY = 0xfe;
const VARIABLE_DATA = 0x55aa;
const VAR_ADDED = 0x3f;
const VAR_IN_DELETED_TRANSITION = 0xfe;
const VAR_ADDED_IN_DELETED_TRANSITION = VAR_ADDED & VAR_IN_DELETED_TRANSITION;
/** AUTHENTICATED_VARIABLE_HEADER. */
const VARIABLE_HEADER_BYTES = 60;
const HEADER_ALIGNMENT = 4;
const ERASED = 0xff;

/** AuthVariableLib: certdb, its GUID (gEfiCertDbGuid) and the attributes edk2 gives it. */
const CERT_DB_NAME = "certdb";
const CERT_DB_GUID = "d9bee56e-75dc-49d9-b4d7-b534210f637a";
const CERT_DB_ATTRIBUTES = ATTR.nonVolatile | ATTR.bootServiceAccess | ATTR.runtimeAccess | ATTR.timeBasedAuthenticatedWriteAccess;
/** AUTH_CERT_DB_DATA: VendorGuid, CertNodeSize, NameSize (in CHAR16s, no NUL), CertDataSize. */
const CERT_NODE_HEADER_BYTES = 28;

/** Where the parts of a store are, each checked against the buffer. */
interface Layout {
  /** The volume's length (FvLength), at most the buffer's. */
  volumeBytes: number;
  /** The volume header's length: the variable store header starts here. */
  headerBytes: number;
  /** The first variable's offset. */
  variablesStart: number;
  /** The end of the variable region (the store header's offset + its Size). */
  variablesEnd: number;
  /** The smallest block size in the block map: blocks are where the working block may start. */
  blockBytes: number;
}

function u64(bytes: Buffer, at: number, what: string): number {
  const value = bytes.readBigUInt64LE(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw fail(`${what} is ${value}, past any store Kiln reads`);
  return Number(value);
}

function layoutOf(store: Buffer): Layout {
  if (store.length < FV_HEADER_FIXED_BYTES + FV_BLOCK_MAP_ENTRY_BYTES + VARIABLE_STORE_HEADER_BYTES) {
    throw fail(`the store is ${store.length} bytes, too small for a firmware volume and a variable store header`);
  }
  const fsGuid = guidFromBytes(store, 16);
  if (fsGuid !== SYSTEM_NV_DATA_FV_GUID) throw fail(`not an edk2 variable store: the volume's file system GUID is ${fsGuid}`);
  if (!store.subarray(40, 44).equals(FV_SIGNATURE)) throw fail("not an edk2 variable store: no _FVH signature");
  const volumeBytes = u64(store, 32, "the volume length");
  if (volumeBytes > store.length) throw fail(`the volume header says ${volumeBytes} bytes but the store has ${store.length}: truncated`);
  const headerBytes = store.readUInt16LE(48);
  const revision = store.readUInt8(55);
  if (revision !== FV_REVISION) throw fail(`firmware volume revision ${revision} is not supported (only ${FV_REVISION})`);
  if (headerBytes < FV_HEADER_FIXED_BYTES + FV_BLOCK_MAP_ENTRY_BYTES || headerBytes % 2 !== 0 || headerBytes > volumeBytes) {
    throw fail(`the volume header length ${headerBytes} is invalid`);
  }
  let sum = 0;
  for (let at = 0; at < headerBytes; at += 2) sum = (sum + store.readUInt16LE(at)) & 0xffff;
  if (sum !== 0) throw fail("the volume header's checksum is wrong");

  // The block map: (NumBlocks, Length) pairs ending in (0, 0), covering the volume.
  let mapped = 0;
  let blockBytes = Number.POSITIVE_INFINITY;
  let at = FV_HEADER_FIXED_BYTES;
  for (; ; at += FV_BLOCK_MAP_ENTRY_BYTES) {
    if (at + FV_BLOCK_MAP_ENTRY_BYTES > headerBytes) throw fail("the volume's block map has no end within its header");
    const blocks = store.readUInt32LE(at);
    const length = store.readUInt32LE(at + 4);
    if (blocks === 0 && length === 0) break;
    if (blocks === 0 || length === 0) throw fail("the volume's block map has an empty entry");
    mapped += blocks * length;
    blockBytes = Math.min(blockBytes, length);
  }
  if (mapped !== volumeBytes) throw fail(`the volume's block map covers ${mapped} bytes, not its length ${volumeBytes}`);

  if (headerBytes + VARIABLE_STORE_HEADER_BYTES > volumeBytes) throw fail("the volume has no room for a variable store header");
  const signature = guidFromBytes(store, headerBytes);
  if (signature === VARIABLE_GUID) throw fail("a store of unauthenticated variables (gEfiVariableGuid) is not supported; OVMF's is authenticated");
  if (signature !== AUTHENTICATED_VARIABLE_GUID) throw fail(`not an edk2 variable store: the store signature is ${signature}`);
  const regionBytes = store.readUInt32LE(headerBytes + 16);
  const variablesEnd = headerBytes + regionBytes;
  if (regionBytes < VARIABLE_STORE_HEADER_BYTES || variablesEnd > volumeBytes) {
    throw fail(`the variable store's size ${regionBytes} does not fit the ${volumeBytes}-byte volume`);
  }
  const format = store.readUInt8(headerBytes + 20);
  const state = store.readUInt8(headerBytes + 21);
  if (format !== VARIABLE_STORE_FORMATTED) throw fail(`the variable store is not formatted (format 0x${format.toString(16)})`);
  if (state !== VARIABLE_STORE_HEALTHY) throw fail(`the variable store is not healthy (state 0x${state.toString(16)})`);
  return { volumeBytes, headerBytes, variablesStart: align(headerBytes + VARIABLE_STORE_HEADER_BYTES), variablesEnd, blockBytes };
}

const align = (at: number) => Math.ceil(at / HEADER_ALIGNMENT) * HEADER_ALIGNMENT;

interface Entry {
  variable: UefiVariable;
  state: number;
}

/** A variable's name as stored: UTF-16LE with a terminating NUL, and no NUL before it. */
function nameOf(bytes: Buffer, offset: number): string {
  if (bytes.length < 2 || bytes.length % 2 !== 0)
    throw fail(`the variable at offset ${offset} has a name of ${bytes.length} bytes, not a NUL-terminated UTF-16 string`);
  const name = bytes.subarray(0, -2).toString("utf16le");
  if (bytes.readUInt16LE(bytes.length - 2) !== 0 || name.includes("\0"))
    throw fail(`the variable at offset ${offset} has a name that is not one NUL-terminated string`);
  if (name.length === 0) throw fail(`the variable at offset ${offset} has an empty name`);
  return name;
}

/** The live variables of a store, certdb among them, in store order. */
function liveVariables(store: Buffer, layout: Layout): UefiVariable[] {
  const entries: Entry[] = [];
  let at = layout.variablesStart;
  while (at + VARIABLE_HEADER_BYTES <= layout.variablesEnd && store.readUInt16LE(at) === VARIABLE_DATA) {
    const state = store.readUInt8(at + 2);
    const attributes = store.readUInt32LE(at + 4);
    const nameBytes = store.readUInt32LE(at + 36);
    const dataBytes = store.readUInt32LE(at + 40);
    const nameAt = at + VARIABLE_HEADER_BYTES;
    if (nameBytes > layout.variablesEnd - nameAt || dataBytes > layout.variablesEnd - nameAt - nameBytes) {
      throw fail(`the variable at offset ${at} (NameSize ${nameBytes}, DataSize ${dataBytes}) runs past the variable store's end at ${layout.variablesEnd}`);
    }
    const dataAt = nameAt + nameBytes;
    if (state === VAR_ADDED || state === VAR_ADDED_IN_DELETED_TRANSITION) {
      const variable: UefiVariable = {
        guid: guidFromBytes(store, at + 44),
        name: nameOf(store.subarray(nameAt, dataAt), at),
        attributes,
        data: Buffer.from(store.subarray(dataAt, dataAt + dataBytes)),
      };
      const timestamp = store.subarray(at + 16, at + 16 + EFI_TIME_BYTES);
      if (isTimeAuthenticated(attributes) && timestamp.some((b) => b !== 0)) variable.timestamp = Buffer.from(timestamp);
      entries.push({ variable, state });
    }
    at = align(dataAt + dataBytes);
  }
  // A copy in deleted transition counts only where the variable has no added copy.
  const added = new Set(entries.filter((e) => e.state === VAR_ADDED).map((e) => variableKey(e.variable)));
  const live: UefiVariable[] = [];
  const seen = new Set<string>();
  for (const { variable, state } of entries) {
    const key = variableKey(variable);
    if (state !== VAR_ADDED && added.has(key)) continue;
    if (seen.has(key)) throw fail(`the store holds two live copies of variable ${variable.name} under ${variable.guid}`);
    seen.add(key);
    live.push(variable);
  }
  return live;
}

interface CertNode {
  guid: string;
  name: string;
  digest: Buffer;
}

/** AuthVariableLib's certdb: UINT32 CertDbListSize, then AUTH_CERT_DB_DATA nodes. */
function parseCertDb(data: Buffer): CertNode[] {
  if (data.length < 4 || data.readUInt32LE(0) !== data.length) throw fail(`certdb's list size does not match its ${data.length} bytes`);
  const nodes: CertNode[] = [];
  for (let at = 4; at < data.length; ) {
    if (at + CERT_NODE_HEADER_BYTES > data.length) throw fail(`certdb's node at ${at} runs past its end`);
    const nodeBytes = data.readUInt32LE(at + 16);
    const nameChars = data.readUInt32LE(at + 20);
    const digestBytes = data.readUInt32LE(at + 24);
    if (
      nameChars > data.length ||
      digestBytes > data.length ||
      nodeBytes !== CERT_NODE_HEADER_BYTES + 2 * nameChars + digestBytes ||
      nodeBytes > data.length - at
    ) {
      throw fail(`certdb's node at ${at} has inconsistent sizes`);
    }
    const nameAt = at + CERT_NODE_HEADER_BYTES;
    const digestAt = nameAt + 2 * nameChars;
    nodes.push({
      guid: guidFromBytes(data, at),
      name: data.subarray(nameAt, digestAt).toString("utf16le"),
      digest: Buffer.from(data.subarray(digestAt, digestAt + digestBytes)),
    });
    at += nodeBytes;
  }
  return nodes;
}

function buildCertDb(vars: readonly UefiVariable[]): Buffer {
  const nodes: Buffer[] = [];
  for (const v of vars) {
    if (!v.digest || v.digest.length === 0 || !isTimeAuthenticated(v.attributes)) continue;
    const name = Buffer.from(v.name, "utf16le");
    const node = Buffer.alloc(CERT_NODE_HEADER_BYTES + name.length + v.digest.length);
    guidToBytes(v.guid).copy(node, 0);
    node.writeUInt32LE(node.length, 16);
    node.writeUInt32LE(name.length / 2, 20);
    node.writeUInt32LE(v.digest.length, 24);
    name.copy(node, CERT_NODE_HEADER_BYTES);
    v.digest.copy(node, CERT_NODE_HEADER_BYTES + name.length);
    nodes.push(node);
  }
  const list = Buffer.concat([Buffer.alloc(4), ...nodes]);
  list.writeUInt32LE(list.length, 0);
  return list;
}

const isCertDb = (v: { guid: string; name: string }) => v.name === CERT_DB_NAME && v.guid.toLowerCase() === CERT_DB_GUID;

/**
 * certdb taken out of a list of variables, its digests put on the time-based authenticated
 * variables they belong to (a digest a variable already carries is kept).
 */
function foldCertDb(vars: readonly UefiVariable[]): UefiVariable[] {
  const certDb = vars.find(isCertDb);
  if (!certDb) return [...vars];
  const digests = new Map(parseCertDb(certDb.data).map((node) => [variableKey(node), node.digest]));
  return vars
    .filter((v) => !isCertDb(v))
    .map((v) => {
      const digest = digests.get(variableKey(v));
      return digest && digest.length > 0 && !v.digest && isTimeAuthenticated(v.attributes) ? { ...v, digest } : v;
    });
}

/**
 * The variables of an edk2 variable store (an OVMF_VARS file, or a copy a guest has written),
 * in store order: live copies only, certdb read into the variables' digests.
 */
export function readEdk2VarStore(store: Buffer): UefiVariable[] {
  const layout = layoutOf(store);
  return foldCertDb(liveVariables(store, layout));
}

/**
 * Checks a template's fault-tolerant-write working block: found after the variable region on a
 * block boundary, with its signature, and an empty write queue (all erased).
 */
function checkWorkingBlock(template: Buffer, layout: Layout): void {
  const signature = guidToBytes(WORKING_BLOCK_SIGNATURE_GUID);
  for (
    let at = Math.ceil(layout.variablesEnd / layout.blockBytes) * layout.blockBytes;
    at + WORKING_BLOCK_HEADER_BYTES <= layout.volumeBytes;
    at += layout.blockBytes
  ) {
    if (!template.subarray(at, at + GUID_BYTES).equals(signature)) continue;
    const queueBytes = u64(template, at + 24, "the working block's write queue size");
    const queueAt = at + WORKING_BLOCK_HEADER_BYTES;
    if (queueBytes > layout.volumeBytes - queueAt) throw fail("the template's fault-tolerant-write queue runs past the volume");
    if (template.subarray(queueAt, queueAt + queueBytes).some((b) => b !== ERASED)) {
      throw fail("the template's fault-tolerant-write queue is not empty (take a store as OVMF ships it)");
    }
    return;
  }
  throw fail("the template has no fault-tolerant-write working block after its variable region");
}

function variableBytes(v: UefiVariable): Buffer {
  const name = Buffer.from(`${v.name}\0`, "utf16le");
  const header = Buffer.alloc(VARIABLE_HEADER_BYTES);
  header.writeUInt16LE(VARIABLE_DATA, 0);
  header.writeUInt8(VAR_ADDED, 2);
  header.writeUInt32LE(v.attributes >>> 0, 4);
  // MonotonicCount (8 bytes) stays 0: edk2 uses it only for the deprecated count-based writes.
  if (isTimeAuthenticated(v.attributes) && v.timestamp) v.timestamp.copy(header, 16);
  // PubKeyIndex stays 0: time-based authenticated variables find their signer in certdb.
  header.writeUInt32LE(name.length, 36);
  header.writeUInt32LE(v.data.length, 40);
  guidToBytes(v.guid).copy(header, 44);
  return Buffer.concat([header, name, v.data]);
}

/**
 * A store of `template`'s size and layout (OVMF_VARS_4M.fd) holding `vars` and a certdb made
 * from their digests, each written once as a live variable, the rest of the region erased.
 */
export function writeEdk2VarStore(template: Buffer, vars: readonly UefiVariable[]): Buffer {
  const layout = layoutOf(template);
  checkWorkingBlock(template, layout);
  checkVariables(vars);
  const folded = foldCertDb(vars);
  for (const v of folded) {
    if (!(v.attributes & ATTR.nonVolatile)) throw fail(`variable ${v.name} is not non-volatile: a variable store keeps only non-volatile variables`);
    if (v.digest && v.digest.length > MAX_DIGEST_BYTES) {
      throw fail(`certdb gives variable ${v.name} a ${v.digest.length}-byte digest; the longest is ${MAX_DIGEST_BYTES}`);
    }
  }
  const certDb: UefiVariable = { guid: CERT_DB_GUID, name: CERT_DB_NAME, attributes: CERT_DB_ATTRIBUTES, data: buildCertDb(folded) };

  const store = Buffer.from(template);
  store.fill(ERASED, layout.variablesStart, layout.variablesEnd);
  let at = layout.variablesStart;
  for (const v of [certDb, ...folded]) {
    const bytes = variableBytes(v);
    if (bytes.length > layout.variablesEnd - at) {
      throw fail(`the variables do not fit the template's ${layout.variablesEnd - layout.headerBytes}-byte variable store (at ${v.name})`);
    }
    bytes.copy(store, at);
    at = align(at + bytes.length);
  }
  return store;
}
