// A UEFI guest's variable store: the file OVMF keeps its variables in (its second pflash), made
// per instance from OVMF's empty template or from the instance's UEFI data, and read back as
// UEFI data for GetInstanceUefiData, CreateImage, and the instance row when the guest ends.
import { copyFile, readFile, rename, stat, writeFile } from "node:fs/promises";
import { decodeAwsUefiData, encodeAwsUefiData } from "../formats/uefi/aws-uefi-data.js";
import { readEdk2VarStore, writeEdk2VarStore } from "../formats/uefi/edk2-varstore.js";

/** OVMF as Debian's ovmf package installs it: code read-only, a variable store per instance. */
export const OVMF = { code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd" };
/**
 * AAVMF, the same firmware for arm64 guests, as Debian's qemu-efi-aarch64 installs it. Its
 * variable template is erased flash that AAVMF formats at its first boot, so Kiln neither
 * writes UEFI data into it nor reads it back yet.
 */
export const AAVMF = { code: "/usr/share/AAVMF/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd" };

/**
 * Makes the instance's variable store when it has none: OVMF's template with the variables of
 * `uefiData` (the instance's, from its image or an earlier run), or the empty template. A store
 * already there is this node's copy from the guest's last run, newer than any saved data.
 */
export async function seedVarStore(file: string, uefiData: string | null, firmware = OVMF): Promise<void> {
  if (await stat(file).catch(() => undefined)) return;
  if (!uefiData || firmware !== OVMF) {
    await copyFile(firmware.vars, file);
    return;
  }
  const store = writeEdk2VarStore(await readFile(OVMF.vars), await decodeAwsUefiData(uefiData));
  // Written whole or not at all: a half-written store would be taken as the guest's at the next boot.
  await writeFile(`${file}.new`, store);
  await rename(`${file}.new`, file);
}

/** The variables in the instance's store as EC2's UEFI data; undefined when it has no store here. */
export async function varStoreAsUefiData(file: string): Promise<string | undefined> {
  const store = await readFile(file).catch(() => undefined);
  if (!store) return undefined;
  return encodeAwsUefiData(readEdk2VarStore(store));
}
