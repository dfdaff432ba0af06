// UEFI variable stores both ways, against what OVMF itself makes: Debian's pristine
// OVMF_VARS_4M.fd, and a copy OVMF wrote at a first boot under qemu (to its shell; it saves its
// boot entries, console paths, language, MTC and the rest). Its variables go to EC2's UEFI data
// and back, and into a store Kiln writes, which OVMF then boots again: every variable must come
// back as written, but MTC, which OVMF counts up once per boot. The AWS blob's framing (magic,
// CRC-32C from the tests' own CRC, version, a zlib header with no preset dictionary) is checked
// byte by byte; patched stores and blobs (truncated, lying sizes, bad magic or CRC, a zlib
// bomb) must each be refused with a UefiVariableStoreError.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { before, describe, it } from "node:test";
import { deflateSync, inflateSync } from "node:zlib";
import { AWS_UEFI_DATA_LIMITS, decodeAwsUefiData, encodeAwsUefiData } from "../src/formats/uefi/aws-uefi-data.js";
import { readEdk2VarStore, writeEdk2VarStore } from "../src/formats/uefi/edk2-varstore.js";
import { UefiVariableStoreError, type UefiVariable } from "../src/formats/uefi/variable.js";
import { crc32c } from "./helpers/checksums.js";
import { scratch } from "./helpers/tools.js";

const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";
/** A boot to OVMF's shell takes about 8 s under TCG here (5 of them its startup.nsh countdown). */
const BOOT_TIMEOUT_MS = 180_000;
const dir = scratch("kiln-uefi-vars-");

/** UEFI 2.10 §3.3: EFI_GLOBAL_VARIABLE; edk2's MTC (MdeModulePkg's gMtcVendorGuid). */
const GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c";
const MTC_GUID = "eb704011-1402-11d3-8e77-00a0c969723b";
/** A vendor GUID for the tests' own variables. */
const KILN_TEST_GUID = "4b696c6e-7465-4000-8000-756566697661";

/**
 * Boots OVMF under qemu with `vars` as its variable flash, to its shell, then ends qemu. OVMF
 * writes its variables on the way; what it printed on its serial console is returned.
 */
async function bootToShell(vars: string): Promise<string> {
  const log = `${vars}.serial.log`;
  writeFileSync(log, "");
  const qemu = spawn(
    "qemu-system-x86_64",
    [
      ...["-machine", "q35", "-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none", "-serial", `file:${log}`],
      ...["-drive", `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`, "-drive", `if=pflash,format=raw,unit=1,file=${vars}`],
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  qemu.stderr.setEncoding("utf8").on("data", (text: string) => (stderr += text));
  const exited = new Promise<void>((resolve) => qemu.once("exit", () => resolve()));
  let running = true;
  void exited.then(() => (running = false));
  try {
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    for (;;) {
      const serial = readFileSync(log, "latin1");
      if (serial.includes("Shell>")) return serial;
      if (!running) throw new Error(`qemu ended before OVMF reached its shell: ${stderr}\n${serial.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`OVMF did not reach its shell in ${BOOT_TIMEOUT_MS / 1000} s:\n${serial.slice(-2000)}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  } finally {
    // SIGTERM: qemu shuts down in order, its flash writes on disk.
    if (running) qemu.kill("SIGTERM");
    await exited;
  }
}

const byKey = (vars: readonly UefiVariable[]) => new Map(vars.map((v) => [`${v.guid}/${v.name}`, v]));
const named = (vars: readonly UefiVariable[], name: string, guid = GLOBAL) => vars.find((v) => v.name === name && v.guid === guid);

/** zlib's Adler-32 (RFC 1950 §8.2), which a zlib header uses to name its preset dictionary. */
function adler32(bytes: Uint8Array): number {
  let a = 1;
  let b = 0;
  for (const byte of bytes) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/** EC2 UEFI data around a zlib stream: magic, the CRC-32C (the tests' own), version. */
function frame(zlibStream: Buffer, { version = 0, magic = "AMZNUEFI" } = {}): string {
  const body = Buffer.alloc(4 + zlibStream.length);
  body.writeUInt32LE(version, 0);
  zlibStream.copy(body, 4);
  const head = Buffer.alloc(12);
  head.write(magic, 0, "latin1");
  head.writeUInt32LE(crc32c(body), 8);
  return Buffer.concat([head, body]).toString("base64");
}
const deflated = (raw: Buffer, dictionary?: Buffer) => deflateSync(raw, dictionary ? { dictionary } : {});

async function refuses(action: () => unknown, pattern: RegExp): Promise<void> {
  await assert.rejects(
    async () => action(),
    (error: Error) => {
      assert.ok(error instanceof UefiVariableStoreError, `${error.name}: ${error.message}`);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

let pristine: Buffer;
/** The store after OVMF's first boot, and its variables. */
let booted: Buffer;
let bootedVars: UefiVariable[];

before(async () => {
  for (const file of [OVMF_CODE, OVMF_VARS]) assert.ok(existsSync(file), `${file} is missing: Debian's ovmf package (scripts/test-tools.mjs) installs it`);
  pristine = readFileSync(OVMF_VARS);
  const vars = join(dir, "first-boot.fd");
  copyFileSync(OVMF_VARS, vars);
  await bootToShell(vars);
  booted = readFileSync(vars);
  bootedVars = readEdk2VarStore(booted);
});

describe("OVMF's variable stores", () => {
  it("reads Debian's OVMF_VARS_4M.fd: a formatted store with no variables", () => {
    assert.equal(pristine.length, 540672);
    assert.deepEqual(readEdk2VarStore(pristine), []);
  });

  it("reads the variables OVMF wrote at its first boot, one live copy of each", () => {
    assert.notDeepEqual(booted, pristine, "OVMF wrote nothing");
    const names = bootedVars.map((v) => v.name);
    for (const name of ["BootOrder", "Boot0000", "Timeout", "PlatformLang", "Lang", "ConIn", "ConOut", "ErrOut"]) {
      assert.ok(named(bootedVars, name), `no ${name} among ${names.join(", ")}`);
    }
    assert.equal(byKey(bootedVars).size, bootedVars.length, "a variable came back twice");
    assert.equal(named(bootedVars, "PlatformLang")!.data.toString("latin1"), "en\0");
    assert.equal(named(bootedVars, "Lang")!.data.toString("latin1"), "eng\0");
    assert.equal(named(bootedVars, "MTC", MTC_GUID)!.data.readUInt32LE(0), 1, "MTC counts boots: one so far");
    // BootOrder names Boot#### variables that exist.
    const order = named(bootedVars, "BootOrder")!.data;
    assert.ok(order.length >= 2 && order.length % 2 === 0);
    for (let at = 0; at < order.length; at += 2) {
      const entry = `Boot${order.readUInt16LE(at).toString(16).toUpperCase().padStart(4, "0")}`;
      assert.ok(named(bootedVars, entry), `BootOrder names ${entry}, which is missing`);
    }
    // OVMF rewrote ConIn, ConOut and ErrOut as it found consoles: the store holds older, deleted
    // copies, which are not read.
    const headerCount = (name: string) => booted.toString("latin1").split(Buffer.from(`${name}\0`, "utf16le").toString("latin1")).length - 1;
    assert.ok(headerCount("ConIn") > 1, "expected OVMF to have written ConIn more than once");
    // certdb is read into digests, not listed; every variable is non-volatile.
    assert.equal(
      bootedVars.find((v) => v.name === "certdb"),
      undefined,
    );
    for (const v of bootedVars) assert.equal(v.attributes & 1, 1, `${v.name} is not non-volatile`);
  });

  it("reads a variable's copies by their State as edk2 does", () => {
    // A header is 60 bytes before its name; State is its third byte.
    const stateAt = (name: string, which: "first" | "last") => {
      const needle = Buffer.from(`${name}\0`, "utf16le");
      return (which === "first" ? booted.indexOf(needle) : booted.lastIndexOf(needle)) - 60 + 2;
    };
    const firstConIn = stateAt("ConIn", "first");
    const lastBootOrder = stateAt("BootOrder", "last");
    const lastTimeout = stateAt("Timeout", "last");
    assert.equal(booted[firstConIn], 0x3c, "OVMF's first ConIn is deleted (VAR_ADDED & VAR_DELETED & VAR_IN_DELETED_TRANSITION)");
    assert.equal(booted[lastBootOrder], 0x3f, "the last BootOrder is live (VAR_ADDED)");
    const patched = Buffer.from(booted);
    // An update cut short: the old copy in deleted transition, a new added copy beside it; the
    // added copy is the variable.
    patched[firstConIn] = 0x3e;
    // In deleted transition with no added copy: still the variable.
    patched[lastBootOrder] = 0x3e;
    assert.deepEqual(readEdk2VarStore(patched), bootedVars);
    // Header written, data not (VAR_HEADER_VALID_ONLY): not a variable.
    patched[lastTimeout] = 0x7f;
    assert.deepEqual(
      readEdk2VarStore(patched),
      bootedVars.filter((v) => v.name !== "Timeout"),
    );
  });

  it("goes to EC2's UEFI data and back unchanged, framed as AWS frames it", async () => {
    const text = await encodeAwsUefiData(bootedVars);
    assert.match(text, /^[A-Za-z0-9+/]+={0,2}$/);
    assert.deepEqual(await decodeAwsUefiData(text), bootedVars);

    const blob = Buffer.from(text, "base64");
    assert.equal(blob.subarray(0, 8).toString("latin1"), "AMZNUEFI");
    assert.equal(blob.readUInt32LE(8), crc32c(blob.subarray(12)), "the CRC-32C covers everything after it");
    assert.equal(blob.readUInt32LE(12), 0, "version 0");
    // RFC 1950: deflate, FCHECK holding, FDICT clear, so python-uefivars' decompressobj inflates
    // it without its dictionary (zlib asks for one only when the header names it).
    const zlibStream = blob.subarray(16);
    assert.equal(zlibStream[0]! & 0x0f, 8, "deflate");
    assert.equal(zlibStream.readUInt16BE(0) % 31, 0, "FCHECK holds");
    assert.equal(zlibStream[1]! & 0x20, 0, "FDICT is clear");
    const raw = inflateSync(zlibStream);
    assert.equal(Number(raw.readBigUInt64LE(0)), bootedVars.length);
    // The first record: the name's length and UTF-8 bytes.
    const first = bootedVars[0]!;
    assert.equal(Number(raw.readBigUInt64LE(8)), Buffer.byteLength(first.name));
    assert.equal(raw.subarray(16, 16 + Buffer.byteLength(first.name)).toString("utf8"), first.name);
    // Line breaks in the text are taken, as the AWS CLI's tools take them.
    assert.deepEqual(await decodeAwsUefiData(text.replace(/(.{76})/g, "$1\n")), bootedVars);
  });

  it("writes a store of the template's size and layout that reads back the same", async () => {
    const written = writeEdk2VarStore(pristine, bootedVars);
    assert.equal(written.length, pristine.length);
    assert.deepEqual(readEdk2VarStore(written), bootedVars);
    // The volume header (its checksum with it) and the store header are the template's; so is
    // everything after the variable region (OVMF's event log, fault-tolerant-write blocks).
    const regionEnd = 0x48 + pristine.readUInt32LE(0x48 + 16);
    assert.equal(regionEnd, 0x40000);
    assert.deepEqual(written.subarray(0, 0x64), pristine.subarray(0, 0x64));
    assert.deepEqual(written.subarray(regionEnd), pristine.subarray(regionEnd));
    // Variables start 4-byte aligned right after the store header; the free space is erased flash.
    assert.equal(written.readUInt16LE(0x64), 0x55aa);
    assert.ok(written.subarray(regionEnd - 0x1000, regionEnd).every((b) => b === 0xff));
    // The same variables by way of EC2's UEFI data make the same store, byte for byte.
    assert.deepEqual(writeEdk2VarStore(pristine, await decodeAwsUefiData(await encodeAwsUefiData(bootedVars))), written);
  });

  it("boots OVMF again from a store Kiln wrote, every variable kept", async () => {
    // Beside OVMF's own: a variable of Kiln's, larger than a page, and a time-based authenticated
    // one with a timestamp and a digest, which goes into certdb (OVMF drops a certdb entry whose
    // variable it cannot find there, so a wrongly laid out certdb would lose the digest).
    const ours: UefiVariable[] = [
      { guid: KILN_TEST_GUID, name: "KilnLarge", attributes: 0x7, data: Buffer.from(Array.from({ length: 5000 }, (_, n) => n % 251)) },
      {
        guid: KILN_TEST_GUID,
        name: "KilnAuthenticated",
        attributes: 0x27,
        timestamp: Buffer.from([0xe9, 0x07, 12, 7, 10, 30, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
        digest: Buffer.alloc(32, 0x5a),
        data: Buffer.from("an authenticated payload"),
      },
    ];
    const vars = [...bootedVars, ...ours];
    // Through EC2's UEFI data first, as RegisterImage would take it.
    const fromAws = await decodeAwsUefiData(await encodeAwsUefiData(vars));
    assert.deepEqual(fromAws, vars);
    const file = join(dir, "kiln-written.fd");
    writeFileSync(file, writeEdk2VarStore(pristine, fromAws));
    await bootToShell(file);

    const after = readEdk2VarStore(readFileSync(file));
    const afterByKey = byKey(after);
    const mtc = named(vars, "MTC", MTC_GUID)!.data.readUInt32LE(0);
    for (const v of vars) {
      const now = afterByKey.get(`${v.guid}/${v.name}`);
      assert.ok(now, `${v.name} is gone after the boot`);
      if (v.name === "MTC") {
        // OVMF read the count Kiln wrote and added one: it took the store, it did not start anew.
        assert.equal(now.data.readUInt32LE(0), mtc + 1);
      } else {
        assert.deepEqual(now, v, `${v.name} changed across the boot`);
      }
    }
  });
});

describe("hostile stores and blobs", () => {
  it("refuses a truncated store, a bad checksum and sizes past the end", async () => {
    await refuses(() => readEdk2VarStore(booted.subarray(0, 0x20000)), /truncated/);
    await refuses(() => readEdk2VarStore(booted.subarray(0, 40)), /too small/);
    await refuses(() => readEdk2VarStore(Buffer.alloc(booted.length, 0xff)), /not an edk2 variable store/);
    const badSum = Buffer.from(booted);
    badSum[0x2c]! ^= 0x01;
    await refuses(() => readEdk2VarStore(badSum), /checksum/);
    // The first variable's header is at 0x64: NameSize at +36, DataSize at +40.
    const firstNameSize = booted.readUInt32LE(0x64 + 36);
    for (const [field, value] of [
      [36, 0x7fffffff],
      [40, 0xffffffff],
      // One byte more than the region has after the first name.
      [40, 0x40000 - (0x64 + 60 + firstNameSize) + 1],
    ] as const) {
      const lying = Buffer.from(booted);
      lying.writeUInt32LE(value, 0x64 + field);
      await refuses(() => readEdk2VarStore(lying), /runs past the variable store's end/);
    }
    const oddName = Buffer.from(booted);
    oddName.writeUInt32LE(3, 0x64 + 36);
    await refuses(() => readEdk2VarStore(oddName), /name/);
  });

  it("refuses blobs with a bad magic, CRC, version or base64", async () => {
    const text = await encodeAwsUefiData(bootedVars);
    const blob = Buffer.from(text, "base64");
    const patched = (at: number) => {
      const copy = Buffer.from(blob);
      copy[at]! ^= 0x40;
      return copy.toString("base64");
    };
    await refuses(() => decodeAwsUefiData(patched(0)), /AMZNUEFI/);
    await refuses(() => decodeAwsUefiData(patched(blob.length - 5)), /CRC-32C/);
    await refuses(() => decodeAwsUefiData(patched(8)), /CRC-32C/);
    await refuses(() => decodeAwsUefiData(blob.subarray(0, blob.length - 7).toString("base64")), /CRC-32C/);
    await refuses(() => decodeAwsUefiData(frame(blob.subarray(16), { version: 1 })), /version 1/);
    await refuses(() => decodeAwsUefiData(`${text.slice(0, 20)}*${text.slice(21)}`), /not base64/);
    await refuses(() => decodeAwsUefiData("QU1aTlVF"), /AMZNUEFI/);
    await refuses(() => decodeAwsUefiData(""), /AMZNUEFI/);
    // A stream deflated against a preset dictionary is refused by its id, whatever it holds.
    const dictionary = Buffer.from("a dictionary Kiln does not have");
    await refuses(
      () => decodeAwsUefiData(frame(deflated(Buffer.alloc(8), dictionary))),
      new RegExp(`deflated against a preset dictionary \\(Adler-32 0x${adler32(dictionary).toString(16).padStart(8, "0")}\\)`),
    );
    // EC2's own blobs: a zlib header with FDICT set (0x78 0xf9) and that dictionary's id.
    await refuses(() => decodeAwsUefiData(frame(Buffer.from([0x78, 0xf9, 0x6b, 0xb7, 0xd9, 0xf7, 1, 2, 3]))), /EC2's own preset dictionary/);
    // A valid frame around a broken zlib stream.
    await refuses(() => decodeAwsUefiData(frame(Buffer.from([0x78, 0xda, 1, 2, 3, 4, 5, 6, 7]))), /zlib stream is damaged/);
  });

  it("stops a zlib bomb at the inflate limit", async () => {
    const bomb = deflated(Buffer.alloc(16 * AWS_UEFI_DATA_LIMITS.inflatedBytes));
    assert.ok(bomb.length < 64_000, "small enough to pass for RegisterImage's UefiData");
    await refuses(() => decodeAwsUefiData(frame(bomb)), /inflates past 1048576 bytes/);
  });

  it("refuses counts and lengths the inflated data cannot hold", async () => {
    const u64 = (n: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(n);
      return b;
    };
    await refuses(() => decodeAwsUefiData(frame(deflated(u64(1n << 40n)))), /counts 1099511627776 variables/);
    await refuses(() => decodeAwsUefiData(frame(deflated(u64(100n)))), /more than its 8 bytes can hold/);
    const record = (nameLength: bigint, rest: Buffer) => frame(deflated(Buffer.concat([u64(1n), u64(nameLength), rest])));
    await refuses(() => decodeAwsUefiData(record(0xffffffffffffffffn, Buffer.alloc(40))), /name is \d+ bytes; Kiln reads at most 1024/);
    await refuses(() => decodeAwsUefiData(record(60n, Buffer.alloc(40))), /name runs past the end/);
    // A name, then a data length past the end.
    await refuses(() => decodeAwsUefiData(record(1n, Buffer.concat([Buffer.from("A"), u64(1000n), Buffer.alloc(30)]))), /variable 0's data runs past the end/);
    await refuses(() => decodeAwsUefiData(record(2n, Buffer.concat([Buffer.from([0xc3, 0x28]), Buffer.alloc(40)]))), /not UTF-8/);
    await refuses(
      () => decodeAwsUefiData(record(1n, Buffer.concat([Buffer.from("A"), u64(300n * 1024n), Buffer.alloc(300 * 1024 + 20)]))),
      /data is 307200 bytes; Kiln reads at most 262144/,
    );
  });

  it("refuses variables a store cannot take", async () => {
    const one = (v: Partial<UefiVariable>): UefiVariable => ({ guid: KILN_TEST_GUID, name: "Kiln", attributes: 0x7, data: Buffer.alloc(1), ...v });
    await refuses(() => writeEdk2VarStore(pristine, [one({}), one({})]), /given twice/);
    await refuses(() => writeEdk2VarStore(pristine, [one({ attributes: 0x6 })]), /not non-volatile/);
    await refuses(() => writeEdk2VarStore(pristine, [one({ name: "" })]), /empty name/);
    await refuses(() => writeEdk2VarStore(pristine, [one({ guid: "not-a-guid" })]), /not a GUID/);
    await refuses(() => writeEdk2VarStore(pristine, [one({ data: Buffer.alloc(0x40000) })]), /do not fit/);
    await refuses(() => writeEdk2VarStore(booted.subarray(0, 0x30000), bootedVars), /truncated/);
    // A template whose fault-tolerant-write queue holds a record OVMF would replay.
    const pending = Buffer.from(pristine);
    pending[0x41020] = 0xfe;
    await refuses(() => writeEdk2VarStore(pending, bootedVars), /queue is not empty/);
    await refuses(() => encodeAwsUefiData([one({ name: "a\0b" })]), /NUL/);
    await refuses(() => encodeAwsUefiData([one({ name: "a\ud800b" })]), /surrogate/);
    await refuses(() => encodeAwsUefiData([one({ name: "N".repeat(1025) })]), /over 1024 bytes/);
    await refuses(() => encodeAwsUefiData([one({ data: Buffer.alloc(AWS_UEFI_DATA_LIMITS.dataBytes + 1) })]), /bytes of data, over/);
    await refuses(() => encodeAwsUefiData([one({ attributes: 0x27, digest: Buffer.alloc(65, 1) })]), /65-byte digest/);
  });
});
