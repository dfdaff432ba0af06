// A UEFI variable as Kiln moves it between an instance's OVMF variable store
// (edk2-varstore.ts) and EC2's UEFI data (aws-uefi-data.ts): what both formats keep of it.

/** A non-volatile UEFI variable. */
export interface UefiVariable {
  /** The vendor GUID, in registry form: lowercase, 8-4-4-4-12 hex digits. */
  guid: string;
  /** The variable's name, without the terminating NUL. */
  name: string;
  /** UEFI's EFI_VARIABLE_* attribute bits (ATTR below). */
  attributes: number;
  /**
   * A time-based authenticated variable's EFI_TIME (16 bytes, as stored), when it is not all
   * zeros. Only kept for variables with ATTR.timeBasedAuthenticatedWriteAccess.
   */
  timestamp?: Buffer;
  /**
   * What edk2's "certdb" variable keeps for a time-based authenticated variable (a SHA-256 over
   * its signer's certificate chain), which EC2's UEFI data carries beside the variable as its
   * digest. Only kept for variables with ATTR.timeBasedAuthenticatedWriteAccess.
   */
  digest?: Buffer;
  data: Buffer;
}

/** UEFI 2.10 §8.2 GetVariable(): the attribute bits. */
export const ATTR = {
  nonVolatile: 0x1,
  bootServiceAccess: 0x2,
  runtimeAccess: 0x4,
  hardwareErrorRecord: 0x8,
  /** Deprecated by UEFI; edk2 refuses new writes with it. */
  authenticatedWriteAccess: 0x10,
  timeBasedAuthenticatedWriteAccess: 0x20,
  appendWrite: 0x40,
} as const;

/** The one error these readers and writers throw for bytes or variables they will not take. */
export class UefiVariableStoreError extends Error {
  override readonly name = "UefiVariableStoreError";
}

/** EFI_TIME's size (UEFI 2.10 §8.3): the timestamp both formats store. */
export const EFI_TIME_BYTES = 16;
export const GUID_BYTES = 16;
/** The longest digest Kiln takes: SHA-512's, the longest hash edk2's AuthVariableLib names. */
export const MAX_DIGEST_BYTES = 64;

const GUID_FORM = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** A UTF-16 surrogate without its other half: such a name has no UTF-8 form. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** An EFI_GUID as stored (Data1, Data2 and Data3 little-endian, Data4 as bytes) → registry form. */
export function guidFromBytes(bytes: Buffer, at = 0): string {
  if (at + GUID_BYTES > bytes.length) throw new UefiVariableStoreError("a GUID runs past the end of its buffer");
  const hex = (from: number, to: number) => bytes.subarray(at + from, at + to).toString("hex");
  const d1 = bytes.readUInt32LE(at).toString(16).padStart(8, "0");
  const d2 = bytes
    .readUInt16LE(at + 4)
    .toString(16)
    .padStart(4, "0");
  const d3 = bytes
    .readUInt16LE(at + 6)
    .toString(16)
    .padStart(4, "0");
  return `${d1}-${d2}-${d3}-${hex(8, 10)}-${hex(10, 16)}`;
}

/** Registry form → an EFI_GUID's 16 bytes as stored. */
export function guidToBytes(guid: string): Buffer {
  const form = guid.toLowerCase();
  if (!GUID_FORM.test(form)) throw new UefiVariableStoreError(`${JSON.stringify(guid)} is not a GUID (8-4-4-4-12 hex digits)`);
  const hex = form.replaceAll("-", "");
  const out = Buffer.alloc(GUID_BYTES);
  out.writeUInt32LE(Number.parseInt(hex.slice(0, 8), 16), 0);
  out.writeUInt16LE(Number.parseInt(hex.slice(8, 12), 16), 4);
  out.writeUInt16LE(Number.parseInt(hex.slice(12, 16), 16), 6);
  Buffer.from(hex.slice(16), "hex").copy(out, 8);
  return out;
}

/** Whether a variable is time-based authenticated, so has a timestamp and may have a digest. */
export const isTimeAuthenticated = (attributes: number) => (attributes & ATTR.timeBasedAuthenticatedWriteAccess) !== 0;

/** A variable's identity: UEFI names a variable by its name and vendor GUID together. */
export const variableKey = (v: { guid: string; name: string }) => `${v.guid.toLowerCase()}/${v.name}`;

/**
 * Checks what both writers need of a caller's variables: a GUID, a name both formats can hold (not
 * empty, no NUL, whole UTF-16), 32-bit attributes, a 16-byte timestamp, a digest of at most
 * MAX_DIGEST_BYTES, each variable once.
 */
export function checkVariables(vars: readonly UefiVariable[]): void {
  const seen = new Set<string>();
  for (const v of vars) {
    guidToBytes(v.guid);
    if (v.name.length === 0) throw new UefiVariableStoreError(`a variable under ${v.guid} has an empty name`);
    if (v.name.includes("\0")) throw new UefiVariableStoreError(`variable ${JSON.stringify(v.name)} has a NUL in its name`);
    if (LONE_SURROGATE.test(v.name)) throw new UefiVariableStoreError(`variable ${JSON.stringify(v.name)} has half a UTF-16 surrogate pair in its name`);
    if (!Number.isInteger(v.attributes) || v.attributes < 0 || v.attributes > 0xffffffff) {
      throw new UefiVariableStoreError(`variable ${v.name} has attributes ${v.attributes}, not a 32-bit value`);
    }
    if (v.timestamp && v.timestamp.length !== EFI_TIME_BYTES) {
      throw new UefiVariableStoreError(`variable ${v.name} has a ${v.timestamp.length}-byte timestamp; EFI_TIME is ${EFI_TIME_BYTES}`);
    }
    if (v.digest && v.digest.length > MAX_DIGEST_BYTES) {
      throw new UefiVariableStoreError(`variable ${v.name} has a ${v.digest.length}-byte digest; the longest is ${MAX_DIGEST_BYTES}`);
    }
    const key = variableKey(v);
    if (seen.has(key)) throw new UefiVariableStoreError(`variable ${v.name} under ${v.guid} is given twice`);
    seen.add(key);
  }
}
