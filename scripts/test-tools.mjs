#!/usr/bin/env node
// Readies a machine for `npm test` (its pretest, before the build; .ci/run calls it too). The tests
// make their fixtures with the tools users make disks and keys with, and drive Kiln with real
// clients, so they need more than Node. Missing Debian packages are installed where this user may
// (root, or sudo without a password); otherwise, and for what Debian does not package, it stops
// with one message saying what to install and how. Exit 0: everything is there.
import { spawnSync } from "node:child_process";
import { accessSync, constants, existsSync, realpathSync, statSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";

const PYTHON = process.env.KILN_TEST_PYTHON ?? "python3";
const MOTO_SERVER = process.env.KILN_TEST_MOTO_SERVER ?? "moto_server";
const TF_PLUGINS = process.env.KILN_TF_PLUGINS ?? "/opt/tf-plugins";
/** Where Debian installs commands; also apt-get's PATH (dpkg wants the sbin folders on it). */
const SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/**
 * Every tool the suite runs (what test/ passes to run, execFile and spawn), each with the Debian
 * package that provides it, or how to get it where Debian has none. coreutils (dd, truncate, cp,
 * rm, stat) and tar are Essential in Debian, so on every Debian system, and not listed.
 */
const TOOLS = [
  // Disk images, partition tables and file systems for the import, export and file-system tests.
  { tool: "qemu-img", debian: "qemu-utils" },
  { tool: "qemu-io", debian: "qemu-utils" },
  { tool: "sfdisk", debian: "fdisk" },
  { tool: "mkfs.ext4", debian: "e2fsprogs" },
  { tool: "mke2fs", debian: "e2fsprogs" },
  { tool: "debugfs", debian: "e2fsprogs" },
  { tool: "dumpe2fs", debian: "e2fsprogs" },
  { tool: "e2fsck", debian: "e2fsprogs" },
  { tool: "mkfs.vfat", debian: "dosfstools" },
  { tool: "mcopy", debian: "mtools" },
  { tool: "mmd", debian: "mtools" },
  { tool: "mdel", debian: "mtools" },
  { tool: "mshowfat", debian: "mtools" },
  { tool: "mkfs.xfs", debian: "xfsprogs" },
  { tool: "xfs_db", debian: "xfsprogs" },
  { tool: "mkfs.btrfs", debian: "btrfs-progs" },
  { tool: "btrfs", debian: "btrfs-progs" },
  { tool: "mkntfs", debian: "ntfs-3g" },
  { tool: "ntfs-3g", debian: "ntfs-3g" },
  { tool: "ntfscp", debian: "ntfs-3g" },
  { tool: "ntfsinfo", debian: "ntfs-3g" },
  { tool: "fusermount", debian: "fuse3" },
  // Guests: the NBD server checked with libnbd's client; instances booted by qemu, on SeaBIOS or
  // OVMF, and arm64 ones on AAVMF; the Debian image they boot built by scripts/debian-image.sh (mmdebstrap, GRUB for BIOS
  // and UEFI from the host's grub-mkimage, its partitions with sfdisk, mkfs.ext4 and mtools).
  { tool: "nbdinfo", debian: "libnbd-bin" },
  { tool: "qemu-system-x86_64", debian: "qemu-system-x86" },
  // A guest's network namespace (vm/guest-network.ts): unshare and nsenter, and ip to set it up.
  { tool: "unshare", debian: "util-linux" },
  { tool: "nsenter", debian: "util-linux" },
  { tool: "ip", debian: "iproute2" },
  { tool: "OVMF", debian: "ovmf", present: () => existsSync("/usr/share/OVMF/OVMF_CODE_4M.fd") },
  { tool: "qemu-system-aarch64", debian: "qemu-system-arm" },
  { tool: "AAVMF", debian: "qemu-efi-aarch64", present: () => existsSync("/usr/share/AAVMF/AAVMF_CODE.fd") },
  { tool: "mmdebstrap", debian: "mmdebstrap" },
  { tool: "grub-mkimage", debian: "grub-common" },
  { tool: "GRUB's BIOS modules", debian: "grub-pc-bin", present: () => existsSync("/usr/lib/grub/i386-pc/boot.img") },
  { tool: "GRUB's UEFI modules", debian: "grub-efi-amd64-bin", present: () => existsSync("/usr/lib/grub/x86_64-efi/linux.mod") },
  // Key pairs, checked with the tools their users hold them with.
  { tool: "ssh-keygen", debian: "openssh-client" },
  { tool: "openssl", debian: "openssl" },
  { tool: "puttygen", debian: "putty-tools" },
  // Clients other than the JavaScript SDK against Kiln.
  { tool: "aws", debian: "awscli" },
  { tool: PYTHON, debian: "python3" },
  { tool: "boto3", debian: "python3-boto3", present: () => runs(PYTHON, ["-c", "import boto3"]), install: pythonAdvice },
  { tool: "packer", debian: "packer" },
  {
    tool: "terraform",
    install: "Debian has no package: put HashiCorp's terraform release (one binary) on PATH",
  },
  {
    tool: "Terraform's AWS provider",
    present: () => existsSync(join(TF_PLUGINS, "registry.terraform.io/hashicorp/aws")),
    install:
      `a local plugin mirror of hashicorp/aws in ${TF_PLUGINS} (or KILN_TF_PLUGINS): in an empty folder, ` +
      `printf 'terraform {\\n  required_providers {\\n    aws = { source = "hashicorp/aws" }\\n  }\\n}\\n' > main.tf && ` +
      `terraform providers mirror ${TF_PLUGINS}`,
  },
  // An S3 that Kiln did not write, for the object-store tests.
  { tool: MOTO_SERVER, install: "Debian has no package: python3 -m pip install 'moto[server]' (KILN_TEST_MOTO_SERVER names another binary)" },
];

/** The executable `command` names (a path, or a name looked up in `path`), or undefined. */
function which(command, path = (process.env.PATH ?? "").split(delimiter)) {
  const candidates = command.includes("/") ? [command] : path.filter(Boolean).map((dir) => join(dir, command));
  return candidates.find((file) => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  });
}

function runs(command, args) {
  return spawnSync(command, args, { stdio: "ignore" }).status === 0;
}

/** Debian's python3-boto3 serves Debian's python3 alone: another python3 needs its own boto3. */
function pythonAdvice() {
  const python = which(PYTHON);
  if (!python || realpathSync(python) === realpathSync("/usr/bin/python3")) return undefined;
  return `${python} has none: pip install boto3 into it, or install Debian's python3-boto3 and run the tests with KILN_TEST_PYTHON=/usr/bin/python3`;
}

/** What is missing, each with its remedy: a folder to put on PATH, a Debian package, or advice. */
function survey() {
  return TOOLS.flatMap((entry) => {
    if (entry.present ? entry.present() : which(entry.tool)) return [];
    // Installed, but in a folder this user's PATH leaves out (Debian's PATH for users has no sbin).
    const elsewhere = entry.present ? undefined : which(entry.tool, SYSTEM_PATH);
    if (elsewhere) return [{ tool: entry.tool, folder: dirname(elsewhere) }];
    const advice = typeof entry.install === "function" ? entry.install() : entry.install;
    return [advice ? { tool: entry.tool, advice } : { tool: entry.tool, debian: entry.debian }];
  });
}

const unique = (items) => [...new Set(items)];
const packagesOf = (entries) => unique(entries.flatMap((entry) => (entry.debian ? [entry.debian] : [])));

/** How this user can run apt-get: as root, through sudo without a password, or not at all. */
function aptRunner() {
  if (!existsSync("/usr/bin/apt-get")) return undefined;
  if (process.getuid?.() === 0) return [];
  return runs("sudo", ["-n", "true"]) ? ["sudo", "-n", "env", `PATH=${SYSTEM_PATH.join(delimiter)}`, "DEBIAN_FRONTEND=noninteractive"] : undefined;
}

function apt(runner, args) {
  const [command, ...rest] = [...runner, "/usr/bin/apt-get", ...args];
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive", PATH: SYSTEM_PATH.join(delimiter) };
  return spawnSync(command, rest, { env, stdio: ["ignore", "inherit", "inherit"] }).status === 0;
}

let missing = survey();
const runner = aptRunner();
if (runner && packagesOf(missing).length) {
  const packages = packagesOf(missing);
  console.error(`Installing the Debian packages Kiln's tests need: ${packages.join(" ")}`);
  const installed = apt(runner, ["update", "-qq"]) && apt(runner, ["install", "-y", "-qq", ...packages]);
  const outcome = installed ? "installing" : "apt-get failed to install";
  missing = survey().map((entry) => (entry.debian ? { tool: entry.tool, advice: `still missing after ${outcome} ${entry.debian}` } : entry));
}
if (!missing.length) process.exit(0);

const lines = ["Kiln's tests need tools this machine lacks (scripts/test-tools.mjs); npm test stops here."];
const packages = packagesOf(missing);
if (packages.length) {
  const sudo = process.getuid?.() === 0 ? "" : "sudo ";
  const tools = missing.filter((entry) => entry.debian).map((entry) => entry.tool);
  lines.push(
    `  ${tools.join(", ")}: Debian package${packages.length > 1 ? "s" : ""} ${packages.join(" ")}. Install with:`,
    `    ${sudo}apt-get update && ${sudo}env DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages.join(" ")}`,
  );
  if (!existsSync("/usr/bin/apt-get")) lines.push("    (on a system other than Debian or Ubuntu, install the same tools from its own packages)");
}
for (const folder of unique(missing.flatMap((entry) => (entry.folder ? [entry.folder] : [])))) {
  const tools = missing.filter((entry) => entry.folder === folder).map((entry) => entry.tool);
  lines.push(`  ${tools.join(", ")}: installed in ${folder}, which is not on PATH: export PATH="$PATH:${folder}"`);
}
for (const entry of missing) if (entry.advice) lines.push(`  ${entry.tool}: ${entry.advice}`);
console.error(lines.join("\n"));
process.exit(1);
