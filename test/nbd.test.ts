// The NBD server (vm/nbd-server.ts) against clients that did not come from Kiln: nbdinfo,
// qemu-img and qemu-io read and write a file-backed export and must find the file's bytes; a
// bare client (helpers/nbd-wire.ts) sends what they never do: requests out of bounds, pipelined
// requests whose order matters, hostile handshakes. After each hostile client the server must
// still serve nbdinfo.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { BlockDevice } from "../src/vm/block-device.js";
import { openFileDevice, type FileDevice } from "../src/vm/file-device.js";
import { NBD_LIMITS, serveNbd, type NbdExport } from "../src/vm/nbd-server.js";
import { NBD, WireClient } from "./helpers/nbd-wire.js";
import { run, scratch } from "./helpers/tools.js";

const KiB = 1024;
const MiB = 1024 * KiB;
const dir = scratch("kiln-nbd-");
let serial = 0;

/** 16 MiB: random data, a zero run, a run of one byte, random data again, a zero tail. */
function makeDisk(size = 16 * MiB): Buffer {
  const disk = Buffer.alloc(size);
  randomBytes(3 * MiB).copy(disk, 0);
  // 3..6 MiB zeros
  disk.fill(0x5a, 6 * MiB, 7 * MiB);
  randomBytes(size - 8 * MiB - 64 * KiB).copy(disk, 7 * MiB + 64 * KiB);
  disk.fill(0, size - MiB);
  return disk;
}

interface Served {
  exported: NbdExport;
  device: FileDevice;
  path: string;
  uri: string;
  events: { event: string; detail?: object }[];
}

/** A fresh file holding `content`, served over NBD (the device wrapped by `wrap`) for the length of `use`. */
async function withExport(
  content: Buffer,
  use: (served: Served) => Promise<void>,
  options: { name?: string; readOnly?: boolean; wrap?: (device: FileDevice) => BlockDevice } = {},
): Promise<void> {
  const n = ++serial;
  const path = join(dir, `disk-${n}.raw`);
  writeFileSync(path, content);
  const device = await openFileDevice(path);
  const events: Served["events"] = [];
  const exported = await serveNbd(options.wrap ? options.wrap(device) : device, join(dir, `nbd-${n}.sock`), {
    name: options.name,
    readOnly: options.readOnly,
    log: (event, detail) => events.push({ event, detail }),
  });
  try {
    await use({ exported, device, path, uri: `nbd+unix:///?socket=${exported.socketPath}`, events });
  } finally {
    await exported.close();
    await device.close();
  }
}

interface NbdInfo {
  "export-name": string;
  "export-size": number;
  is_read_only: boolean;
  can_flush: boolean;
  can_fua: boolean;
  can_trim: boolean;
  can_zero: boolean;
  block_size_minimum: number;
  block_size_preferred: number;
  block_size_maximum: number;
}

async function nbdinfo(uri: string): Promise<NbdInfo> {
  const info = JSON.parse(await run("nbdinfo", ["--json", uri])) as { protocol: string; exports: NbdInfo[] };
  assert.equal(info.protocol, "newstyle-fixed");
  assert.equal(info.exports.length, 1);
  return info.exports[0]!;
}

/** The export still answers a fresh client, with its size. */
async function assertServes(served: Served): Promise<void> {
  assert.equal((await nbdinfo(served.uri))["export-size"], served.device.size);
}

/** qemu-io's exit status and output (it exits 1 when a command failed). */
function qemuIo(uri: string, commands: string[], extra: string[] = []): Promise<{ code: number; output: string }> {
  const args = [...extra, "-f", "raw", uri, ...commands.flatMap((command) => ["-c", command])];
  return new Promise((resolve) => {
    execFile("qemu-io", args, { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? -1) : 0, output: stdout + stderr });
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A device that passes every call to `inner`, noting it (and its arguments) as it starts and ends. */
function recording(inner: BlockDevice, calls: string[], delay: (call: string, offset: number, data?: Buffer) => number = () => 0): BlockDevice {
  const note = async <T>(call: string, offset: number, length: number, work: () => Promise<T>, data?: Buffer): Promise<T> => {
    calls.push(`${call} ${offset} ${length} start`);
    const ms = delay(call, offset, data);
    if (ms > 0) await sleep(ms);
    const result = await work();
    calls.push(`${call} ${offset} ${length} end`);
    return result;
  };
  return {
    size: inner.size,
    read: (offset, length) => note("read", offset, length, () => inner.read(offset, length)),
    write: (offset, data, fua) => note(fua ? "write-fua" : "write", offset, data.length, () => inner.write(offset, data, fua), data),
    writeZeroes: (offset, length, fua) => note(fua ? "zero-fua" : "zero", offset, length, () => inner.writeZeroes(offset, length, fua)),
    trim: (offset, length) => note("trim", offset, length, () => inner.trim(offset, length)),
    flush: () => note("flush", 0, 0, () => inner.flush()),
  };
}

describe("NBD server: what real clients see", () => {
  it("tells nbdinfo the export's name, size, flags and block sizes, and lists it", async () => {
    const disk = makeDisk();
    await withExport(
      disk,
      async (served) => {
        const info = await nbdinfo(`nbd+unix:///vol-0123?socket=${served.exported.socketPath}`);
        assert.equal(info["export-name"], "vol-0123");
        assert.equal(info["export-size"], disk.length);
        assert.deepEqual(
          [info.is_read_only, info.can_flush, info.can_fua, info.can_trim, info.can_zero],
          [false, true, true, true, true],
          "read-only, flush, fua, trim, zero",
        );
        assert.deepEqual([info.block_size_minimum, info.block_size_preferred, info.block_size_maximum], [512, 4096, 32 * MiB]);
        // The default (empty) name reaches the one export too.
        assert.equal((await nbdinfo(served.uri))["export-size"], disk.length);
        const list = await run("nbdinfo", ["--list", "--json", served.uri]);
        assert.deepEqual(
          (JSON.parse(list) as { exports: NbdInfo[] }).exports.map((e) => e["export-name"]),
          ["vol-0123"],
        );
        await assert.rejects(run("nbdinfo", ["--json", `nbd+unix:///vol-other?socket=${served.exported.socketPath}`]), /unknown|not available|export/i);
      },
      { name: "vol-0123" },
    );
  });

  it("gives qemu-img the file's bytes (random, zero and patterned regions)", async () => {
    const disk = makeDisk();
    await withExport(disk, async (served) => {
      assert.match(await run("qemu-img", ["info", served.uri]), new RegExp(`virtual size: .*\\(${disk.length} bytes\\)`));
      const out = join(dir, `read-${serial}.raw`);
      await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", served.uri, out]);
      assert.ok(readFileSync(out).equals(disk), "qemu-img convert out of the export differs from the file");
      await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", served.path, served.uri]);
    });
  });

  it("takes qemu-img's writes into the export (convert -n), byte for byte", async () => {
    const source = join(dir, `source-${serial}.raw`);
    const bytes = makeDisk();
    writeFileSync(source, bytes);
    await withExport(makeDisk(), async (served) => {
      await run("qemu-img", ["convert", "-n", "-f", "raw", "-O", "raw", source, `nbd:unix:${served.exported.socketPath}`]);
      assert.ok(readFileSync(served.path).equals(bytes), "the file behind the export does not hold what qemu-img wrote");
      await run("qemu-img", ["compare", "-f", "raw", "-F", "raw", source, served.uri]);
    });
  });

  it("carries qemu-io's write, FUA write, flush, zeroing and discard to the device", async () => {
    const disk = makeDisk();
    const calls: string[] = [];
    await withExport(
      disk,
      async (served) => {
        const { code, output } = await qemuIo(
          served.uri,
          [
            "write -P 0xab 4096 65536",
            "flush",
            "read -P 0xab 4096 65536",
            "write -z 0 4096",
            "write -f -P 0xcd 1M 64k",
            "read -P 0xcd 1M 64k",
            "discard 2M 1M",
            "read -P 0 0 4096",
          ],
          ["-t", "writeback"],
        ); // qemu-io writes through (every write FUA) unless told
        assert.equal(code, 0, output);
        assert.doesNotMatch(output, /failed|error/i);
        const file = readFileSync(served.path);
        const expected = Buffer.from(disk);
        expected.fill(0xab, 4096, 4096 + 65536);
        expected.fill(0, 0, 4096);
        expected.fill(0xcd, MiB, MiB + 64 * KiB);
        // A trimmed range may keep its data or read as zeros; the rest must be exactly as written.
        file.copy(expected, 2 * MiB, 2 * MiB, 3 * MiB);
        assert.ok(file.equals(expected), "the file does not hold what qemu-io wrote");
        for (const call of ["write 4096 65536 end", "flush 0 0 end", "zero 0 4096 end", `write-fua ${MiB} ${64 * KiB} end`, `trim ${2 * MiB} ${MiB} end`]) {
          assert.ok(calls.includes(call), `no "${call}" in ${calls.join(", ")}`);
        }
        assert.ok(calls.indexOf("flush 0 0 start") > calls.indexOf("write 4096 65536 end"), "the flush reached the device before the write it follows");
      },
      { wrap: (device) => recording(device, calls) },
    );
  });

  it("fails a read past the end at once, with an error rather than a hang", async () => {
    await withExport(makeDisk(), async (served) => {
      const started = Date.now();
      const { code, output } = await qemuIo(served.uri, [`read ${16 * MiB} 512`, "read -P 0x5a 6M 4k"]);
      assert.equal(code, 1, output);
      assert.match(output, /read failed/);
      assert.match(output, /read 4096\/4096 bytes at offset 6291456/);
      assert.ok(Date.now() - started < 10_000);
    });
  });

  it("serves several clients at once, each on its own", async () => {
    const disk = makeDisk();
    await withExport(disk, async (served) => {
      const [a, b] = await Promise.all([WireClient.connect(served.exported.socketPath), WireClient.connect(served.exported.socketPath)]);
      await Promise.all([a.go(), b.go()]);
      assert.equal(served.exported.connections, 2);
      a.request(NBD.CMD_READ, { cookie: 1n, offset: 0, length: 4096 });
      b.request(NBD.CMD_READ, { cookie: 2n, offset: 8 * MiB, length: 4096 });
      const [ra, rb] = await Promise.all([a.reply(new Map([[1n, 4096]])), b.reply(new Map([[2n, 4096]]))]);
      assert.ok(ra.data?.equals(disk.subarray(0, 4096)));
      assert.ok(rb.data?.equals(disk.subarray(8 * MiB, 8 * MiB + 4096)));
      a.request(NBD.CMD_DISC);
      assert.ok(await a.hungUp(), "DISC did not end the connection");
      await until(() => served.exported.connections === 1, "the first client to be gone");
      const again = await b.call(NBD.CMD_READ, { offset: 4096, length: 512 });
      assert.ok(again.data?.equals(disk.subarray(4096, 4608)));
      b.close();
    });
  });

  it("refuses writes on a read-only export (EPERM) and says it is read-only", async () => {
    const disk = makeDisk();
    await withExport(
      disk,
      async (served) => {
        const info = await nbdinfo(served.uri);
        assert.deepEqual([info.is_read_only, info.can_trim, info.can_zero, info.can_fua], [true, false, false, false]);
        const client = await WireClient.connect(served.exported.socketPath);
        const { flags } = await client.go();
        assert.ok(flags & NBD.TX_READ_ONLY);
        assert.equal((await client.call(NBD.CMD_WRITE, { offset: 0, data: Buffer.alloc(64 * KiB, 0xee) })).error, NBD.EPERM);
        assert.equal((await client.call(NBD.CMD_WRITE_ZEROES, { offset: 0, length: MiB })).error, NBD.EPERM);
        assert.equal((await client.call(NBD.CMD_TRIM, { offset: 0, length: MiB })).error, NBD.EPERM);
        assert.equal((await client.call(NBD.CMD_FLUSH)).error, 0);
        // The refused payload was read past: the connection is still in step.
        const read = await client.call(NBD.CMD_READ, { offset: 0, length: 64 * KiB });
        assert.ok(read.data?.equals(disk.subarray(0, 64 * KiB)));
        client.close();
        const { code } = await qemuIo(served.uri, ["write -P 1 0 4k"], ["-r"]);
        assert.equal(code, 1);
        assert.ok(readFileSync(served.path).equals(disk), "a read-only export's file changed");
      },
      { readOnly: true },
    );
  });
});

describe("NBD server: the protocol's edges", () => {
  it("ends the handshake with NBD_OPT_EXPORT_NAME, with and without the 124 zero bytes", async () => {
    const disk = makeDisk();
    await withExport(disk, async (served) => {
      for (const clientFlags of [1, 3]) {
        const client = await WireClient.connect(served.exported.socketPath);
        const handshakeFlags = await client.handshake(clientFlags);
        assert.equal(handshakeFlags, 3, "FIXED_NEWSTYLE | NO_ZEROES");
        client.sendOption(NBD.OPT_EXPORT_NAME);
        const reply = await client.read(clientFlags === 3 ? 10 : 134);
        assert.equal(Number(reply.readBigUInt64BE(0)), disk.length);
        const flags = reply.readUInt16BE(8);
        const want = NBD.TX_HAS_FLAGS | NBD.TX_SEND_FLUSH | NBD.TX_SEND_FUA | NBD.TX_SEND_TRIM | NBD.TX_SEND_WRITE_ZEROES;
        assert.equal(flags, want);
        if (clientFlags === 1) assert.ok(reply.subarray(10).equals(Buffer.alloc(124)));
        const read = await client.call(NBD.CMD_READ, { offset: 6 * MiB, length: 4096 });
        assert.ok(read.data?.equals(disk.subarray(6 * MiB, 6 * MiB + 4096)), "transmission is out of step after the handshake");
        client.close();
      }
      // NBD_OPT_EXPORT_NAME cannot be refused: an unknown name is a hang-up.
      const stranger = await WireClient.connect(served.exported.socketPath);
      await stranger.handshake();
      stranger.sendOption(NBD.OPT_EXPORT_NAME, Buffer.from("nope"));
      assert.ok(await stranger.hungUp(), "an unknown export name did not end the connection");
    });
  });

  it("answers options it does not serve with NBD_REP_ERR_UNSUP, bad ones with an error, and stays in the handshake", async () => {
    await withExport(
      makeDisk(),
      async (served) => {
        const client = await WireClient.connect(served.exported.socketPath);
        await client.handshake();
        for (const option of [NBD.OPT_STRUCTURED_REPLY, NBD.OPT_SET_META_CONTEXT, NBD.OPT_STARTTLS, 0xdeadbeef]) {
          client.sendOption(option, option === 0xdeadbeef ? randomBytes(100) : Buffer.alloc(0));
          const reply = await client.optionReply();
          assert.deepEqual([reply.option, reply.type], [option, NBD.REP_ERR_UNSUP]);
        }
        client.sendOption(NBD.OPT_LIST, Buffer.from("x"));
        assert.equal((await client.optionReply()).type, NBD.REP_ERR_INVALID);
        client.sendOption(NBD.OPT_LIST);
        const server = await client.optionReply();
        assert.equal(server.type, NBD.REP_SERVER);
        assert.equal(server.data.toString("utf8", 4, 4 + server.data.readUInt32BE(0)), "disk");
        assert.equal((await client.optionReply()).type, NBD.REP_ACK);
        assert.equal((await client.info(NBD.OPT_INFO, "other")).at(-1)!.type, NBD.REP_ERR_UNKNOWN);
        client.sendOption(NBD.OPT_INFO, Buffer.from([0, 0, 0, 9, 1, 2]));
        assert.equal((await client.optionReply()).type, NBD.REP_ERR_INVALID);
        client.sendOption(NBD.OPT_GO, Buffer.from([0, 0, 0, 0, 0, 5, 0, 3]));
        assert.equal((await client.optionReply()).type, NBD.REP_ERR_INVALID, "a count of 5 requests with one sent");
        const info = await client.info(NBD.OPT_INFO, "disk", [NBD.INFO_NAME, NBD.INFO_BLOCK_SIZE]);
        assert.equal(info.at(-1)!.type, NBD.REP_ACK);
        const kinds = info.filter((reply) => reply.type === NBD.REP_INFO).map((reply) => reply.data.readUInt16BE(0));
        assert.deepEqual(kinds.sort(), [NBD.INFO_EXPORT, NBD.INFO_NAME, NBD.INFO_BLOCK_SIZE]);
        const go = await client.info(NBD.OPT_GO, "");
        assert.equal(go.at(-1)!.type, NBD.REP_ACK);
        assert.equal((await client.call(NBD.CMD_FLUSH)).error, 0);
        client.close();

        const aborting = await WireClient.connect(served.exported.socketPath);
        await aborting.handshake();
        aborting.sendOption(NBD.OPT_ABORT);
        assert.equal((await aborting.optionReply()).type, NBD.REP_ACK);
        assert.ok(await aborting.hungUp());
      },
      { name: "disk" },
    );
  });

  it("refuses requests out of bounds, unaligned, too long, unknown or with unknown flags, and stays in step", async () => {
    const disk = makeDisk();
    const calls: string[] = [];
    await withExport(
      disk,
      async (served) => {
        const client = await WireClient.connect(served.exported.socketPath);
        const { size } = await client.go();
        const refusals: [string, number, Parameters<WireClient["call"]>[1], number][] = [
          ["read at the end", NBD.CMD_READ, { offset: size, length: 512 }, NBD.EINVAL],
          ["read across the end", NBD.CMD_READ, { offset: size - 512, length: 1024 }, NBD.EINVAL],
          ["read at 2^63", NBD.CMD_READ, { offset: 1n << 63n, length: 512 }, NBD.EINVAL],
          ["read at 2^64 - 512", NBD.CMD_READ, { offset: (1n << 64n) - 512n, length: 512 }, NBD.EINVAL],
          ["unaligned read", NBD.CMD_READ, { offset: 100, length: 512 }, NBD.EINVAL],
          ["read over the maximum payload", NBD.CMD_READ, { offset: 0, length: 32 * MiB + 512 }, NBD.EINVAL],
          ["read with DF (not negotiated)", NBD.CMD_READ, { offset: 0, length: 512, flags: NBD.FLAG_DF }, NBD.EINVAL],
          ["write across the end", NBD.CMD_WRITE, { offset: size - 512, data: randomBytes(4096) }, NBD.ENOSPC],
          ["unaligned write", NBD.CMD_WRITE, { offset: 512, data: randomBytes(1000) }, NBD.EINVAL],
          ["write over the maximum payload", NBD.CMD_WRITE, { offset: 0, data: Buffer.alloc(32 * MiB + 512, 0x77) }, NBD.EINVAL],
          ["write zeroes across the end", NBD.CMD_WRITE_ZEROES, { offset: size - 512, length: 4096 }, NBD.ENOSPC],
          ["trim across the end", NBD.CMD_TRIM, { offset: size, length: 4096 }, NBD.EINVAL],
          ["NBD_CMD_CACHE (not offered)", NBD.CMD_CACHE, { offset: 0, length: 4096 }, NBD.EINVAL],
          ["NBD_CMD_BLOCK_STATUS (not negotiated)", NBD.CMD_BLOCK_STATUS, { offset: 0, length: 4096 }, NBD.EINVAL],
          ["an unknown command", 0x4242, { offset: 0, length: 4096 }, NBD.EINVAL],
        ];
        for (const [what, type, options, error] of refusals) {
          assert.equal((await client.call(type, options)).error, error, what);
        }
        assert.ok(!calls.some((call) => call.startsWith("write") || call.startsWith("zero")), `a refused request reached the device: ${calls.join(", ")}`);
        // Zero-length requests are answered without touching the device.
        assert.equal((await client.call(NBD.CMD_READ, { offset: 4096, length: 0 })).error, 0);
        assert.equal((await client.call(NBD.CMD_WRITE, { offset: 4096, length: 0 })).error, 0);
        // Still in step: the last sector reads back as it is.
        const last = await client.call(NBD.CMD_READ, { offset: size - 4096, length: 4096 });
        assert.ok(last.data?.equals(disk.subarray(size - 4096)));
        assert.ok(readFileSync(served.path).equals(disk), "a refused request changed the file");
        client.close();
      },
      { wrap: (device) => recording(device, calls) },
    );
  });

  it("answers a FLUSH only once the writes before it are durable", async () => {
    // A device that models a write cache: a write is durable once a flush that started after it
    // resolved has resolved. Writes at 0 are slow, so a server that flushed at once would miss it.
    const durable = new Set<number>();
    const resolvedWrites = new Set<number>();
    const calls: string[] = [];
    await withExport(
      makeDisk(),
      async (served) => {
        const client = await WireClient.connect(served.exported.socketPath);
        await client.go();
        // One write answered before the FLUSH is sent, one still in flight when it arrives.
        assert.equal((await client.call(NBD.CMD_WRITE, { offset: MiB, data: Buffer.alloc(64 * KiB, 1) })).error, 0);
        client.request(NBD.CMD_WRITE, { cookie: 1n, offset: 0, data: Buffer.alloc(64 * KiB, 2) });
        client.request(NBD.CMD_FLUSH, { cookie: 2n });
        const order: bigint[] = [];
        for (let i = 0; i < 2; i++) {
          const reply = await client.reply();
          assert.equal(reply.error, 0);
          order.push(reply.cookie);
          if (reply.cookie === 2n) {
            assert.ok(durable.has(MiB), "FLUSH answered before the write answered earlier was durable");
            assert.ok(durable.has(0), "FLUSH answered before the write received ahead of it was durable");
          }
        }
        assert.deepEqual(order, [1n, 2n]);
        assert.ok(calls.indexOf("flush 0 0 start") > calls.indexOf("write 0 65536 end"), calls.join(", "));
        client.close();
      },
      {
        wrap: (device) => {
          const inner = recording(device, calls, (call, offset) => (call === "write" && offset === 0 ? 150 : 0));
          return {
            ...inner,
            size: inner.size,
            write: async (offset, data, fua) => {
              await inner.write(offset, data, fua);
              resolvedWrites.add(offset);
            },
            flush: async () => {
              const covered = [...resolvedWrites];
              await sleep(50);
              await inner.flush();
              for (const offset of covered) durable.add(offset);
            },
          };
        },
      },
    );
  });

  it("runs pipelined requests concurrently but keeps overlapping ones in order", async () => {
    const disk = makeDisk();
    const calls: string[] = [];
    await withExport(
      disk,
      async (served) => {
        const client = await WireClient.connect(served.exported.socketPath);
        await client.go();
        // The first write is slow; the second overlaps it, the third does not, then a read over both.
        client.request(NBD.CMD_WRITE, { cookie: 1n, offset: 0, data: Buffer.alloc(64 * KiB, 0xa1) });
        client.request(NBD.CMD_WRITE, { cookie: 2n, offset: 32 * KiB, data: Buffer.alloc(64 * KiB, 0xb2) });
        client.request(NBD.CMD_WRITE, { cookie: 3n, offset: 4 * MiB, data: Buffer.alloc(64 * KiB, 0xc3) });
        client.request(NBD.CMD_READ, { cookie: 4n, offset: 0, length: 128 * KiB });
        const replies = new Map<bigint, Buffer | undefined>();
        const order: bigint[] = [];
        for (let i = 0; i < 4; i++) {
          const reply = await client.reply(new Map([[4n, 128 * KiB]]));
          assert.equal(reply.error, 0);
          replies.set(reply.cookie, reply.data);
          order.push(reply.cookie);
        }
        assert.ok(order.indexOf(3n) < order.indexOf(1n), `the write elsewhere waited for the slow one: ${order.join(", ")}`);
        assert.ok(order.indexOf(1n) < order.indexOf(2n) && order.indexOf(2n) < order.indexOf(4n), `overlapping requests out of order: ${order.join(", ")}`);
        const expected = Buffer.from(disk.subarray(0, 128 * KiB));
        expected.fill(0xa1, 0, 32 * KiB);
        expected.fill(0xb2, 32 * KiB, 96 * KiB);
        assert.ok(replies.get(4n)?.equals(expected), "the read did not see both writes, in order");
        const file = readFileSync(served.path);
        assert.ok(file.subarray(0, 128 * KiB).equals(expected));
        assert.ok(file.subarray(4 * MiB, 4 * MiB + 64 * KiB).equals(Buffer.alloc(64 * KiB, 0xc3)));
        client.close();
      },
      { wrap: (device) => recording(device, calls, (call, _offset, data) => (call === "write" && data?.[0] === 0xa1 ? 150 : 0)) },
    );
  });

  it("stops reading requests while the client does not read its replies, then answers them all", async () => {
    const disk = makeDisk();
    const calls: string[] = [];
    await withExport(
      disk,
      async (served) => {
        const client = await WireClient.connect(served.exported.socketPath);
        await client.go();
        client.socket.pause(); // the client's kernel buffer fills, then the server's
        const count = 120;
        const lengths = new Map<bigint, number>();
        for (let i = 0; i < count; i++) {
          const cookie = BigInt(i);
          lengths.set(cookie, MiB);
          client.request(NBD.CMD_READ, { cookie, offset: (i % 16) * MiB, length: MiB });
        }
        await sleep(400);
        const started = calls.filter((call) => call.startsWith("read") && call.endsWith("start")).length;
        const bound = (NBD_LIMITS.inFlightBytes + NBD_LIMITS.unsentBytes) / MiB + 8;
        assert.ok(started > 0 && started <= bound, `${started} reads ran while nobody read the replies (at most ${bound} expected)`);
        client.socket.resume();
        for (let i = 0; i < count; i++) {
          const reply = await client.reply(lengths);
          assert.equal(reply.error, 0);
          const at = Number(reply.cookie % 16n) * MiB;
          assert.ok(reply.data?.equals(disk.subarray(at, at + MiB)), `reply ${reply.cookie}`);
        }
        client.close();
      },
      { wrap: (device) => recording(device, calls) },
    );
  });

  it("turns a device that throws (or answers short) into EIO, and the connection goes on", async () => {
    const disk = makeDisk();
    await withExport(
      disk,
      async (served) => {
        const { code, output } = await qemuIo(served.uri, ["read 1M 4k", "read -P 0x5a 6M 4k"]);
        assert.equal(code, 1, output);
        assert.match(output, /read failed: Input\/output error/);
        assert.match(output, /read 4096\/4096 bytes at offset 6291456/);
        assert.doesNotMatch(output, /Pattern verification failed/);

        const client = await WireClient.connect(served.exported.socketPath);
        await client.go();
        assert.equal((await client.call(NBD.CMD_READ, { offset: MiB, length: 4096 })).error, NBD.EIO);
        assert.equal((await client.call(NBD.CMD_READ, { offset: 2 * MiB, length: 4096 })).error, NBD.EIO, "a short buffer from the device");
        assert.equal((await client.call(NBD.CMD_FLUSH)).error, NBD.EIO);
        const after = await client.call(NBD.CMD_READ, { offset: 0, length: 4096 });
        assert.ok(after.data?.equals(disk.subarray(0, 4096)));
        client.close();
        const errors = served.events.filter((e) => e.event === "nbd-device-error");
        assert.ok(errors.length >= 4, `device errors logged: ${JSON.stringify(errors)}`);
        assert.match(JSON.stringify(errors), /disk on fire/);
      },
      {
        wrap: (device) => ({
          size: device.size,
          read: async (offset, length) => {
            if (offset >= MiB && offset < 2 * MiB) throw new Error("disk on fire");
            if (offset >= 2 * MiB && offset < 3 * MiB) return (await device.read(offset, length)).subarray(1);
            return device.read(offset, length);
          },
          write: (offset, data, fua) => device.write(offset, data, fua),
          writeZeroes: (offset, length, fua) => device.writeZeroes(offset, length, fua),
          trim: (offset, length) => device.trim(offset, length),
          flush: () => Promise.reject(new Error("disk on fire")),
        }),
      },
    );
  });
});

describe("NBD server: hostile clients", () => {
  it("hangs up on bad client flags, bad magic, an oversized option, too many options; and still serves", async () => {
    await withExport(makeDisk(), async (served) => {
      const socket = served.exported.socketPath;
      const cases: [string, (client: WireClient) => Promise<void>][] = [
        ["unknown client flags", async (c) => void (await c.handshake(0x80000001))],
        ["no FIXED_NEWSTYLE", async (c) => void (await c.handshake(0))],
        [
          "bad option magic",
          async (c) => {
            await c.handshake();
            c.send(Buffer.from("IHAVEOPS"), Buffer.alloc(8));
          },
        ],
        [
          "option length 2^32-1",
          async (c) => {
            await c.handshake();
            c.sendOption(NBD.OPT_GO, randomBytes(64), 0xffffffff);
            const reply = await c.optionReply();
            assert.equal(reply.type, NBD.REP_ERR_TOO_BIG);
          },
        ],
        [
          "an endless stream of options",
          async (c) => {
            await c.handshake();
            for (let i = 0; i < NBD_LIMITS.options + 10; i++) c.sendOption(0x1000 + i, randomBytes(16));
          },
        ],
        [
          "garbage after the greeting",
          async (c) => {
            await c.read(18);
            c.send(randomBytes(4096));
          },
        ],
        [
          "a request with a bad magic",
          async (c) => {
            await c.go();
            c.request(NBD.CMD_READ, { magic: 0x12345678, offset: 0, length: 512 });
          },
        ],
        [
          "a write too long to skip",
          async (c) => {
            await c.go();
            c.request(NBD.CMD_WRITE, { offset: 0, length: 0xfffffe00 });
            c.send(randomBytes(64 * KiB));
          },
        ],
      ];
      for (const [what, act] of cases) {
        const client = await WireClient.connect(socket);
        await act(client);
        assert.ok(await client.hungUp(), `the server kept the connection after ${what}`);
        await assertServes(served);
      }
      const reasons = served.events.filter((e) => e.event === "nbd-protocol-error").map((e) => (e.detail as { reason: string }).reason);
      assert.equal(reasons.length, cases.length, reasons.join(", "));
      await until(() => served.exported.connections === 0, "every hostile connection to be gone");
    });
  });

  it("drops a write whose client disconnects mid-payload, and still serves", async () => {
    const disk = makeDisk();
    const calls: string[] = [];
    await withExport(
      disk,
      async (served) => {
        for (const sent of [0, 1000, MiB - 1]) {
          const client = await WireClient.connect(served.exported.socketPath);
          await client.go();
          client.request(NBD.CMD_WRITE, { offset: 4 * MiB, length: MiB });
          if (sent > 0) client.send(Buffer.alloc(sent, 0xdd));
          await sleep(20);
          client.close();
          await until(() => served.exported.connections === 0, "the client to be gone");
        }
        await assertServes(served);
        assert.ok(!calls.some((call) => call.startsWith("write")), `a partial write reached the device: ${calls.join(", ")}`);
        assert.ok(readFileSync(served.path).equals(disk));
      },
      { wrap: (device) => recording(device, calls) },
    );
  });

  it("skips the payload of a refused write within bounds, staying in step", async () => {
    const disk = makeDisk();
    await withExport(disk, async (served) => {
      const client = await WireClient.connect(served.exported.socketPath);
      await client.go();
      // 64 MiB: over the maximum payload, under what the server will skip; sent in pieces.
      client.request(NBD.CMD_WRITE, { cookie: 9n, offset: 0, length: 64 * MiB });
      const piece = Buffer.alloc(MiB, 0x99);
      for (let i = 0; i < 64; i++) client.send(piece);
      const reply = await client.reply();
      assert.deepEqual([reply.cookie, reply.error], [9n, NBD.EINVAL]);
      const read = await client.call(NBD.CMD_READ, { offset: 0, length: MiB });
      assert.ok(read.data?.equals(disk.subarray(0, MiB)));
      client.close();
    });
  });
});

describe("NBD server: its socket", () => {
  it("replaces a stale socket, listens with mode 0600, and on close answers what is in flight, hangs up and removes the socket", async () => {
    const path = join(dir, `stale-${++serial}.sock`);
    await run("python3", ["-c", "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])", path]);
    assert.ok(existsSync(path));
    const file = join(dir, `close-${serial}.raw`);
    writeFileSync(file, makeDisk());
    const device = await openFileDevice(file);
    let writeDone = 0;
    const slow: BlockDevice = {
      size: device.size,
      read: (offset, length) => device.read(offset, length),
      write: async (offset, data, fua) => {
        await sleep(200);
        await device.write(offset, data, fua);
        writeDone = Date.now();
      },
      writeZeroes: (offset, length, fua) => device.writeZeroes(offset, length, fua),
      trim: (offset, length) => device.trim(offset, length),
      flush: () => device.flush(),
    };
    const exported = await serveNbd(slow, path);
    try {
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const client = await WireClient.connect(path);
      await client.go();
      assert.equal(exported.connections, 1);
      client.request(NBD.CMD_WRITE, { cookie: 5n, offset: 0, data: Buffer.alloc(4096, 0x3c) });
      await sleep(50);
      const closing = exported.close();
      const reply = await client.reply();
      assert.deepEqual([reply.cookie, reply.error], [5n, 0]);
      assert.ok(await client.hungUp());
      await closing;
      assert.ok(writeDone > 0, "close() resolved before the write in flight was done");
      assert.equal(exported.connections, 0);
      assert.ok(!existsSync(path), "the socket file is still there");
      await assert.rejects(WireClient.connect(path));
      assert.ok(readFileSync(file).subarray(0, 4096).equals(Buffer.alloc(4096, 0x3c)));
    } finally {
      await exported.close();
      await device.close();
    }
    // Something that is not a socket is never removed.
    const notSocket = join(dir, `plain-${serial}.sock`);
    writeFileSync(notSocket, "keep me");
    await assert.rejects(serveNbd(slow, notSocket), /not a socket/);
    assert.equal(readFileSync(notSocket, "utf8"), "keep me");
  });
});
