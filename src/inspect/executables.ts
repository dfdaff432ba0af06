// The machine an executable was built for, from its header: ELF (System V ABI, e_machine) for
// Linux, PE/COFF (Microsoft PE format, "Machine Types") for Windows and EFI applications.

export type Architecture = "x86_64" | "arm64" | "i386";

const ELF_MACHINES: Record<number, Architecture> = { 0x03: "i386", 0x3e: "x86_64", 0xb7: "arm64" };
const PE_MACHINES: Record<number, Architecture> = { 0x14c: "i386", 0x8664: "x86_64", 0xaa64: "arm64" };
/** The architectures Kiln tells apart, as a user reads them. */
export const ARCHITECTURES: readonly Architecture[] = [...new Set(Object.values(ELF_MACHINES))];

/** Bytes an architecture check needs from the start of a file (a PE header may sit a little way in). */
export const HEADER_BYTES = 4096;

export function architectureOf(header: Buffer): Architecture | undefined {
  if (header.length >= 20 && header.readUInt32BE(0) === 0x7f454c46) {
    // EI_DATA (byte 5): 1 little-endian, 2 big-endian; e_machine is the half-word at 18.
    const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
    return ELF_MACHINES[machine];
  }
  if (header.length >= 64 && header.toString("latin1", 0, 2) === "MZ") {
    const peAt = header.readUInt32LE(0x3c);
    if (peAt + 6 > header.length || header.toString("latin1", peAt, peAt + 4) !== "PE\0\0") return undefined;
    return PE_MACHINES[header.readUInt16LE(peAt + 4)];
  }
  return undefined;
}
