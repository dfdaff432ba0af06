// A bootable Debian 12 disk for the boot tests, made by scripts/debian-image.sh from Debian's
// packages once and kept: in KILN_TEST_IMAGE_CACHE (default ~/.cache/kiln), named by a hash of
// the script, so a changed script builds a new one. KILN_TEST_DEBIAN_IMAGE names a ready one.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { run } from "./tools.js";

const SCRIPT = fileURLToPath(new URL("../../../scripts/debian-image.sh", import.meta.url));

/** The disk's path (raw), built first when the cache has none. */
export async function debianImage(): Promise<string> {
  if (process.env.KILN_TEST_DEBIAN_IMAGE) return process.env.KILN_TEST_DEBIAN_IMAGE;
  const hash = createHash("sha256").update(readFileSync(SCRIPT)).digest("hex").slice(0, 16);
  const cache = process.env.KILN_TEST_IMAGE_CACHE ?? join(homedir(), ".cache", "kiln");
  const image = join(cache, `debian-12-${hash}.raw`);
  if (existsSync(image)) return image;
  mkdirSync(cache, { recursive: true });
  const partial = `${image}.${process.pid}.part`;
  try {
    await run("bash", [SCRIPT, partial], { env: { DEBIAN_DEB_CACHE: join(cache, "debs") } });
    renameSync(partial, image);
  } finally {
    rmSync(partial, { force: true });
  }
  return image;
}
