// An NBD server for one BlockDevice on a unix socket: how a qemu guest (and qemu-img, nbdinfo,
// nbdcopy) reaches a Kiln volume. The protocol is NetworkBlockDevice/nbd's doc/proto.md; this
// server speaks the part every client falls back to:
//
// - the fixed newstyle handshake, with the options NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME,
//   NBD_OPT_LIST and NBD_OPT_ABORT; every other option (structured replies, metadata contexts,
//   STARTTLS, ...) is NBD_REP_ERR_UNSUP, so clients use simple replies;
// - simple replies to READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES (FUA; NO_HOLE accepted, as
//   zeroing never needs to leave a hole) and DISC; any other command is EINVAL.
//
// Block sizes: minimum 512 (requests must be sector-aligned, else EINVAL, so a device only ever
// sees whole sectors), preferred 4096, maximum payload 32 MiB.
//
// Each connection reads its socket as a byte-driven state machine (no whole-message buffering):
// a write's payload is copied into its own buffer as it arrives, and a payload the server will
// refuse is skipped without being kept. Requests run concurrently: at most NBD_LIMITS.inFlight of
// them and about NBD_LIMITS.inFlightBytes of payload; past either, or while more than
// NBD_LIMITS.unsentBytes of replies wait for the client to read them, the socket is paused.
// Order is kept where it matters: a request waits for the earlier requests in flight whose range
// overlaps its own when either of them writes, and a FLUSH waits for every earlier write in
// flight before it calls device.flush(), so it covers every write received before it (a superset
// of the ones answered before it, which is what the protocol asks for).
//
// Hostile bytes end their connection, never the process: a bad magic or unknown client flags
// hang up; an option longer than NBD_LIMITS.optionBytes gets NBD_REP_ERR_TOO_BIG, then a hang-up.
// A device that throws becomes an EIO reply (and a log line).
import { lstat, chmod, unlink } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import type { BlockDevice } from "./block-device.js";
import { givePayload, takePayload } from "./payload-buffers.js";

export interface NbdExport {
  readonly socketPath: string;
  /** open client connections */
  readonly connections: number;
  /** Stops listening; lets requests in flight finish and answers them; hangs up; removes the socket file. */
  close(): Promise<void>;
}

export interface NbdOptions {
  /** The export's name; the empty name (the default export) names it too. */
  name?: string;
  /** Refuse writes (EPERM) and say so in the transmission flags. */
  readOnly?: boolean;
  log?: (event: string, detail?: object) => void;
}

// Handshake.
const NBDMAGIC = Buffer.from("NBDMAGIC", "latin1");
const IHAVEOPT = Buffer.from("IHAVEOPT", "latin1");
const OPTION_REPLY_MAGIC_HIGH = 0x0003e889; // 0x3e889045565a9
const OPTION_REPLY_MAGIC_LOW = 0x045565a9;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const CLIENT_FIXED_NEWSTYLE = 1;
const CLIENT_NO_ZEROES = 2;

const OPT_EXPORT_NAME = 1;
const OPT_ABORT = 2;
const OPT_LIST = 3;
const OPT_INFO = 6;
const OPT_GO = 7;

const REP_ACK = 1;
const REP_SERVER = 2;
const REP_INFO = 3;
const REP_ERR_UNSUP = 0x80000001;
const REP_ERR_INVALID = 0x80000003;
const REP_ERR_UNKNOWN = 0x80000006;
const REP_ERR_TOO_BIG = 0x80000009;

const INFO_EXPORT = 0;
const INFO_NAME = 1;
const INFO_BLOCK_SIZE = 3;

// Transmission.
const TX_HAS_FLAGS = 1 << 0;
const TX_READ_ONLY = 1 << 1;
const TX_SEND_FLUSH = 1 << 2;
const TX_SEND_FUA = 1 << 3;
const TX_SEND_TRIM = 1 << 5;
const TX_SEND_WRITE_ZEROES = 1 << 6;

const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;

const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;
const CMD_TRIM = 4;
const CMD_WRITE_ZEROES = 6;
const CMD_NAMES = ["read", "write", "disc", "flush", "trim", "cache", "write-zeroes", "block-status"];

const CMD_FLAG_FUA = 1 << 0;
const CMD_FLAG_NO_HOLE = 1 << 1;

const EPERM = 1;
const EIO = 5;
const EINVAL = 22;
const ENOSPC = 28;

export const NBD_LIMITS = {
  minimumBlock: 512,
  preferredBlock: 4096,
  /** The largest READ or WRITE payload served (2^25, what every client stays within). */
  maximumPayload: 32 * 1024 * 1024,
  /** The largest option data read during the handshake; a longer option ends the connection. */
  optionBytes: 8 * 1024,
  /** Options one connection may send before it is hung up on (a client needs a handful). */
  options: 256,
  /** A WRITE over the maximum payload up to this length is skipped (EINVAL), to stay in sync; a longer one ends the connection. */
  skippedPayloadBytes: 128 * 1024 * 1024,
  /** Requests of one connection running at once. */
  inFlight: 16,
  /** Payload bytes (WRITE data held, READ data owed) of one connection before it stops reading requests. */
  inFlightBytes: 32 * 1024 * 1024,
  /** Reply bytes waiting for the client to read them before the connection stops reading requests. */
  unsentBytes: 16 * 1024 * 1024,
  /** How long a hang-up waits for the client to take what was sent, before the socket is destroyed. */
  hangUpMs: 2000,
} as const;

type Log = (event: string, detail?: object) => void;

/** Serves `device` on a unix socket at `socketPath` (a stale socket there is replaced; mode 0600). */
export async function serveNbd(device: BlockDevice, socketPath: string, options: NbdOptions = {}): Promise<NbdExport> {
  const name = options.name ?? "";
  const nameBytes = Buffer.from(name, "utf8");
  if (nameBytes.length > 4096 || name.includes("\0")) throw new Error("an NBD export name is at most 4096 bytes of UTF-8, without NUL");
  if (!Number.isSafeInteger(device.size) || device.size < 0 || device.size % NBD_LIMITS.minimumBlock !== 0) {
    throw new Error(`an NBD device's size must be a whole number of ${NBD_LIMITS.minimumBlock}-byte sectors, not ${device.size}`);
  }
  const userLog = options.log;
  const log: Log = (event, detail) => {
    try {
      userLog?.(event, detail);
    } catch {
      // A logger that throws must not take a connection (or the process) down with it.
    }
  };
  const readOnly = options.readOnly ?? false;
  const transmissionFlags = readOnly
    ? TX_HAS_FLAGS | TX_READ_ONLY | TX_SEND_FLUSH
    : TX_HAS_FLAGS | TX_SEND_FLUSH | TX_SEND_FUA | TX_SEND_TRIM | TX_SEND_WRITE_ZEROES;
  const exported: Export = { device, nameBytes, readOnly, transmissionFlags, log };

  await removeStaleSocket(socketPath);
  const live = new Set<Connection>();
  let closing: Promise<void> | undefined;
  const server = createServer((socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    const connection = new Connection(socket, exported);
    live.add(connection);
    log("nbd-connected", { socketPath, connections: live.size });
    connection.settled.then(() => {
      live.delete(connection);
      log("nbd-disconnected", { socketPath, connections: live.size });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => log("nbd-server-error", { socketPath, error: String(error) }));
  try {
    await chmod(socketPath, 0o600);
  } catch (error) {
    server.close();
    throw error;
  }
  log("nbd-listening", { socketPath, size: device.size, name, readOnly });

  return {
    socketPath,
    get connections() {
      return live.size;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.all([...live].map((connection) => connection.shutDown()));
        await stopped;
        await unlink(socketPath).catch(() => undefined);
        log("nbd-closed", { socketPath });
      })();
      return closing;
    },
  };
}

async function removeStaleSocket(path: string): Promise<void> {
  try {
    const stat = await lstat(path);
    if (!stat.isSocket()) throw new Error(`${path} exists and is not a socket`);
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
}

interface Export {
  readonly device: BlockDevice;
  readonly nameBytes: Buffer;
  readonly readOnly: boolean;
  readonly transmissionFlags: number;
  readonly log: Log;
}

/** One request in transmission, from its header to its reply. */
interface Request {
  readonly type: number;
  readonly flags: number;
  readonly cookieHigh: number;
  readonly cookieLow: number;
  readonly offset: number;
  readonly length: number;
  /** A WRITE's payload, until the device has it. */
  data: Buffer | undefined;
  /** Counts against the connection's payload budget until answered. */
  readonly cost: number;
  done: boolean;
  waiters: (() => void)[] | undefined;
}

const writesData = (type: number) => type === CMD_WRITE || type === CMD_WRITE_ZEROES || type === CMD_TRIM;
const overlap = (a: Request, b: Request) => a.offset < b.offset + b.length && b.offset < a.offset + a.length;

/** Whether `later` must wait for `earlier`, still in flight, to keep the order the client sent them in. */
function mustFollow(later: Request, earlier: Request): boolean {
  if (later.type === CMD_FLUSH) return writesData(earlier.type);
  if (earlier.type === CMD_FLUSH) return false;
  return (writesData(later.type) || writesData(earlier.type)) && overlap(later, earlier);
}

function finished(request: Request): Promise<void> {
  if (request.done) return Promise.resolve();
  return new Promise((resolve) => {
    request.waiters ??= [];
    request.waiters.push(resolve);
  });
}

type State = "client-flags" | "option-head" | "option-data" | "request-head" | "payload" | "skip" | "done";

const HEAD_BYTES: Record<State, number> = {
  "client-flags": 4,
  "option-head": 16,
  "option-data": 0,
  "request-head": 28,
  payload: 0,
  skip: 0,
  done: 0,
};

class Connection {
  private state: State = "client-flags";
  /** The fixed-size header being read (client flags, option header, request header). */
  private readonly head = Buffer.alloc(28);
  private headFill = 0;
  /** Option data or a WRITE's payload being read (allocated once it spans chunks), its length, and how much has come. */
  private body: Buffer | undefined;
  private bodyLength = 0;
  private bodyFill = 0;
  /** Bytes left to skip (a payload the server refuses), and the request to answer after. */
  private skipLeft = 0;
  private skipped: { request: Request; error: number } | undefined;
  /** The option or the WRITE the body belongs to. */
  private option = 0;
  private writing: Request | undefined;
  /** Bytes received while the connection waited, parsed first when it goes on. */
  private held: Buffer | undefined;

  private noZeroes = false;
  private options = 0;
  private readonly active = new Set<Request>();
  private inFlightBytes = 0;
  /** DISC or shutdown: no more requests; hang up once those in flight are answered. */
  private ending = false;
  private socketClosed = false;
  private hungUp = false;
  private settle!: () => void;
  /** Resolves once the socket is closed and no request is in flight. */
  readonly settled = new Promise<void>((resolve) => (this.settle = resolve));

  constructor(
    private readonly socket: Socket,
    private readonly exported: Export,
  ) {
    socket.on("data", (chunk: Buffer) => {
      // Paused sockets emit nothing more; should one, its bytes still come after the held ones.
      if (this.held) this.held = Buffer.concat([this.held, chunk]);
      else this.consume(chunk);
    });
    socket.on("drain", () => this.goOn());
    socket.on("error", (error: NodeJS.ErrnoException) => {
      // A client that hangs up without waiting for its last reply (NBD_OPT_ABORT, DISC) is no news.
      if (error.code !== "EPIPE" && error.code !== "ECONNRESET") this.exported.log("nbd-socket-error", { error: String(error) });
    });
    socket.on("close", () => {
      this.socketClosed = true;
      this.state = "done";
      this.held = undefined;
      this.body = undefined;
      this.maybeSettled();
    });
    // S: NBDMAGIC, IHAVEOPT, handshake flags.
    const greeting = Buffer.alloc(18);
    NBDMAGIC.copy(greeting, 0);
    IHAVEOPT.copy(greeting, 8);
    greeting.writeUInt16BE(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, 16);
    socket.write(greeting);
  }

  /** Server shutdown: stop taking requests, answer those in flight, hang up. */
  shutDown(): Promise<void> {
    if (this.state !== "request-head" || this.headFill > 0) {
      // Mid-handshake or mid-request: nothing half-read will be answered.
      this.hangUp();
    } else {
      this.endTransmission();
    }
    return this.settled;
  }

  // ---- reading ----

  /** Whether to stop parsing before the next header: too much in flight, or replies piling up. */
  private mustWait(): boolean {
    return this.active.size >= NBD_LIMITS.inFlight || this.inFlightBytes >= NBD_LIMITS.inFlightBytes || this.socket.writableLength >= NBD_LIMITS.unsentBytes;
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      const state = this.state;
      if (state === "done") return;
      const headBytes = HEAD_BYTES[state];
      if (headBytes > 0) {
        if (this.headFill === 0 && this.mustWait()) {
          this.held = at === 0 ? chunk : chunk.subarray(at);
          this.socket.pause();
          return;
        }
        const n = Math.min(headBytes - this.headFill, chunk.length - at);
        chunk.copy(this.head, this.headFill, at, at + n);
        this.headFill += n;
        at += n;
        if (this.headFill === headBytes) {
          this.headFill = 0;
          if (state === "client-flags") this.onClientFlags();
          else if (state === "option-head") this.onOptionHead();
          else this.onRequestHead();
        }
      } else if (state === "skip") {
        const n = Math.min(this.skipLeft, chunk.length - at);
        this.skipLeft -= n;
        at += n;
        if (this.skipLeft === 0) this.onSkipped();
      } else {
        const want = this.bodyLength - this.bodyFill;
        let full: Buffer | undefined;
        if (this.bodyFill === 0 && chunk.length - at >= want) {
          // All of it is in this chunk: used where it lies (every chunk is a buffer of its own).
          full = chunk.subarray(at, at + want);
          at += want;
        } else {
          this.body ??= state === "payload" ? takePayload(this.bodyLength) : Buffer.allocUnsafe(this.bodyLength);
          const body = this.body;
          const n = Math.min(want, chunk.length - at);
          chunk.copy(body, this.bodyFill, at, at + n);
          this.bodyFill += n;
          at += n;
          if (this.bodyFill === this.bodyLength) full = body;
        }
        if (full) {
          this.body = undefined;
          this.bodyFill = 0;
          if (state === "option-data") this.onOption(this.option, full);
          else this.onPayload(full);
        }
      }
    }
  }

  /** Parses what was held back and reads the socket again, once nothing says wait. */
  private goOn(): void {
    if (this.state === "done" || this.mustWait()) return;
    const held = this.held;
    if (held) {
      this.held = undefined;
      this.consume(held); // which may end the connection, or hold bytes again
      if (this.held || (this.state as State) === "done") return;
    }
    this.socket.resume();
  }

  private expect(state: State, bodyLength = 0): void {
    this.state = state;
    this.body = undefined;
    this.bodyLength = bodyLength;
    this.bodyFill = 0;
  }

  /** Ends the connection on a broken rule: what was sent is flushed, nothing more is read. */
  private protocolError(reason: string, detail?: object): void {
    this.exported.log("nbd-protocol-error", { reason, ...detail });
    this.hangUp();
  }

  private hangUp(): void {
    this.state = "done";
    this.held = undefined;
    this.body = undefined;
    if (this.hungUp || this.socketClosed) return;
    this.hungUp = true;
    this.socket.pause();
    const timer = setTimeout(() => this.socket.destroy(), NBD_LIMITS.hangUpMs);
    timer.unref();
    this.socket.end(() => {
      clearTimeout(timer);
      this.socket.destroy();
    });
  }

  private maybeSettled(): void {
    if (this.active.size > 0) return;
    if (this.ending && !this.socketClosed && this.state === "done") {
      this.hangUp();
      return;
    }
    if (this.socketClosed) this.settle();
  }

  // ---- handshake ----

  private onClientFlags(): void {
    const flags = this.head.readUInt32BE(0);
    if (flags & ~(CLIENT_FIXED_NEWSTYLE | CLIENT_NO_ZEROES) || !(flags & CLIENT_FIXED_NEWSTYLE)) {
      this.protocolError("client flags", { flags });
      return;
    }
    this.noZeroes = (flags & CLIENT_NO_ZEROES) !== 0;
    this.expect("option-head");
  }

  private onOptionHead(): void {
    if (!this.head.subarray(0, 8).equals(IHAVEOPT)) {
      this.protocolError("option magic");
      return;
    }
    const option = this.head.readUInt32BE(8);
    const length = this.head.readUInt32BE(12);
    if (++this.options > NBD_LIMITS.options) {
      this.protocolError("too many options", { options: this.options });
      return;
    }
    if (length > NBD_LIMITS.optionBytes) {
      this.optionReply(option, REP_ERR_TOO_BIG, `option data of ${length} bytes is over ${NBD_LIMITS.optionBytes}`);
      this.protocolError("option too long", { option, length });
      return;
    }
    this.option = option;
    if (length === 0) this.onOption(option, Buffer.alloc(0));
    else this.expect("option-data", length);
  }

  private onOption(option: number, data: Buffer): void {
    this.expect("option-head");
    switch (option) {
      case OPT_EXPORT_NAME:
        if (!this.isExportName(data)) {
          // This option cannot be answered with an error: the protocol says hang up.
          this.protocolError("unknown export", { option: "export-name" });
          return;
        }
        this.socket.write(this.exportNameReply());
        this.beginTransmission();
        return;
      case OPT_ABORT:
        this.optionReply(option, REP_ACK);
        this.hangUp();
        return;
      case OPT_LIST:
        if (data.length > 0) {
          this.optionReply(option, REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
          return;
        }
        this.optionReply(option, REP_SERVER, Buffer.concat([u32(this.exported.nameBytes.length), this.exported.nameBytes]));
        this.optionReply(option, REP_ACK);
        return;
      case OPT_INFO:
      case OPT_GO:
        this.infoOrGo(option, data);
        return;
      default:
        this.optionReply(option, REP_ERR_UNSUP, "unsupported option");
    }
  }

  private isExportName(name: Buffer): boolean {
    return name.length === 0 || name.equals(this.exported.nameBytes);
  }

  private infoOrGo(option: number, data: Buffer): void {
    // 32 bits name length, name, 16 bits count, count × 16 bits information requests.
    const nameLength = data.length >= 4 ? data.readUInt32BE(0) : -1;
    if (nameLength < 0 || nameLength > data.length - 6) {
      this.optionReply(option, REP_ERR_INVALID, "malformed export name");
      return;
    }
    const requests = data.readUInt16BE(4 + nameLength);
    if (data.length !== 6 + nameLength + 2 * requests) {
      this.optionReply(option, REP_ERR_INVALID, "malformed information requests");
      return;
    }
    if (!this.isExportName(data.subarray(4, 4 + nameLength))) {
      this.optionReply(option, REP_ERR_UNKNOWN, "no such export");
      return;
    }
    let wantsName = false;
    for (let i = 0; i < requests; i++) if (data.readUInt16BE(6 + nameLength + 2 * i) === INFO_NAME) wantsName = true;

    const { device, nameBytes, transmissionFlags } = this.exported;
    const exportInfo = Buffer.alloc(12);
    exportInfo.writeUInt16BE(INFO_EXPORT, 0);
    writeU64(exportInfo, device.size, 2);
    exportInfo.writeUInt16BE(transmissionFlags, 10);
    this.optionReply(option, REP_INFO, exportInfo);
    // Sent whether asked or not: the minimum differs from the default of 1.
    const blockSize = Buffer.alloc(14);
    blockSize.writeUInt16BE(INFO_BLOCK_SIZE, 0);
    blockSize.writeUInt32BE(NBD_LIMITS.minimumBlock, 2);
    blockSize.writeUInt32BE(NBD_LIMITS.preferredBlock, 6);
    blockSize.writeUInt32BE(NBD_LIMITS.maximumPayload, 10);
    this.optionReply(option, REP_INFO, blockSize);
    if (wantsName) {
      const info = Buffer.alloc(2 + nameBytes.length);
      info.writeUInt16BE(INFO_NAME, 0);
      nameBytes.copy(info, 2);
      this.optionReply(option, REP_INFO, info);
    }
    this.optionReply(option, REP_ACK);
    if (option === OPT_GO) this.beginTransmission();
  }

  private exportNameReply(): Buffer {
    const reply = Buffer.alloc(this.noZeroes ? 10 : 134);
    writeU64(reply, this.exported.device.size, 0);
    reply.writeUInt16BE(this.exported.transmissionFlags, 8);
    return reply;
  }

  private optionReply(option: number, type: number, data?: Buffer | string): void {
    if (this.socketClosed) return;
    const payload = typeof data === "string" ? Buffer.from(data, "utf8") : (data ?? Buffer.alloc(0));
    const header = Buffer.alloc(20);
    header.writeUInt32BE(OPTION_REPLY_MAGIC_HIGH, 0);
    header.writeUInt32BE(OPTION_REPLY_MAGIC_LOW, 4);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(type, 12);
    header.writeUInt32BE(payload.length, 16);
    this.socket.write(payload.length > 0 ? Buffer.concat([header, payload]) : header);
  }

  private beginTransmission(): void {
    this.expect("request-head");
    this.exported.log("nbd-transmission", { noZeroes: this.noZeroes });
  }

  // ---- transmission ----

  private onRequestHead(): void {
    const head = this.head;
    if (head.readUInt32BE(0) !== REQUEST_MAGIC) {
      this.protocolError("request magic", { magic: head.readUInt32BE(0) });
      return;
    }
    const offsetHigh = head.readUInt32BE(16);
    const request: Request = {
      flags: head.readUInt16BE(4),
      type: head.readUInt16BE(6),
      cookieHigh: head.readUInt32BE(8),
      cookieLow: head.readUInt32BE(12),
      // Exact below 2^53; past it, still far past any device's end.
      offset: offsetHigh * 0x100000000 + head.readUInt32BE(20),
      length: head.readUInt32BE(24),
      data: undefined,
      cost: 0,
      done: false,
      waiters: undefined,
    };
    if (request.type === CMD_DISC) {
      this.endTransmission();
      return;
    }
    const error = this.check(request);
    if (request.type === CMD_WRITE) {
      if (error === 0 && request.length === 0) {
        this.dispatch(request);
      } else if (error === 0) {
        this.writing = request;
        this.expect("payload", request.length);
      } else if (request.length > NBD_LIMITS.skippedPayloadBytes) {
        this.protocolError("write payload too long", { length: request.length });
      } else if (request.length > 0) {
        this.skipped = { request, error };
        this.skipLeft = request.length;
        this.state = "skip";
      } else {
        this.reply(request, error);
      }
      return;
    }
    if (error !== 0) this.reply(request, error);
    else this.dispatch({ ...request, cost: request.type === CMD_READ ? request.length : 0 });
  }

  /** The error a request gets before it reaches the device, or 0. */
  private check(request: Request): number {
    const { type, flags, offset, length } = request;
    const size = this.exported.device.size;
    if (type !== CMD_READ && type !== CMD_WRITE && type !== CMD_FLUSH && type !== CMD_TRIM && type !== CMD_WRITE_ZEROES) return EINVAL;
    const allowedFlags = CMD_FLAG_FUA | (type === CMD_WRITE_ZEROES ? CMD_FLAG_NO_HOLE : 0);
    if (flags & ~allowedFlags) return EINVAL;
    if (type === CMD_FLUSH) return 0;
    if (this.exported.readOnly && type !== CMD_READ) return EPERM;
    if ((type === CMD_READ || type === CMD_WRITE) && length > NBD_LIMITS.maximumPayload) return EINVAL;
    if (offset % NBD_LIMITS.minimumBlock !== 0 || length % NBD_LIMITS.minimumBlock !== 0) return EINVAL;
    if (offset + length > size) return type === CMD_WRITE || type === CMD_WRITE_ZEROES ? ENOSPC : EINVAL;
    return 0;
  }

  private onPayload(data: Buffer): void {
    const request = this.writing!;
    this.writing = undefined;
    this.expect("request-head");
    this.dispatch({ ...request, data, cost: data.length });
  }

  private onSkipped(): void {
    const { request, error } = this.skipped!;
    this.skipped = undefined;
    this.expect("request-head");
    this.reply(request, error);
  }

  private dispatch(request: Request): void {
    let before: Request[] | undefined;
    for (const earlier of this.active) {
      if (!mustFollow(request, earlier)) continue;
      before ??= [];
      before.push(earlier);
    }
    this.active.add(request);
    this.inFlightBytes += request.cost;
    void this.execute(request, before);
    if (this.mustWait()) this.socket.pause();
  }

  private async execute(request: Request, before: Request[] | undefined): Promise<void> {
    let error = 0;
    let data: Buffer | undefined;
    try {
      if (before) await Promise.all(before.map(finished));
      data = await this.perform(request);
    } catch (failure) {
      error = EIO;
      this.exported.log("nbd-device-error", {
        command: CMD_NAMES[request.type] ?? request.type,
        offset: request.offset,
        length: request.length,
        error: failure instanceof Error ? failure.message : String(failure),
      });
    }
    // A payload in a buffer of ours goes back for the next (the device keeps no hold on it).
    if (request.data) givePayload(request.data);
    request.data = undefined;
    request.done = true;
    this.active.delete(request);
    this.inFlightBytes -= request.cost;
    this.reply(request, error, data);
    if (request.waiters) for (const wake of request.waiters) wake();
    if (this.ending || this.socketClosed) this.maybeSettled();
    else this.goOn();
  }

  /** Runs a checked request on the device: a READ's data, else nothing. */
  private async perform(request: Request): Promise<Buffer | undefined> {
    const { device } = this.exported;
    const { type, offset, length } = request;
    const fua = (request.flags & CMD_FLAG_FUA) !== 0;
    switch (type) {
      case CMD_READ: {
        if (length === 0) return undefined;
        const into = takePayload(length);
        let data: Buffer;
        try {
          data = await device.read(offset, length, into);
        } catch (error) {
          givePayload(into);
          throw error;
        }
        if (data !== into) givePayload(into);
        if (!Buffer.isBuffer(data) || data.length !== length) {
          throw new Error(`the device read ${Buffer.isBuffer(data) ? data.length : typeof data} bytes for ${length}`);
        }
        return data;
      }
      case CMD_WRITE:
        if (length > 0) await device.write(offset, request.data!, fua);
        return undefined;
      case CMD_WRITE_ZEROES:
        if (length > 0) await device.writeZeroes(offset, length, fua);
        return undefined;
      case CMD_TRIM:
        if (length > 0) await device.trim(offset, length);
        if (fua) await device.flush();
        return undefined;
      default:
        await device.flush();
        return undefined;
    }
  }

  private reply(request: Request, error: number, data?: Buffer): void {
    const socket = this.socket;
    if (this.socketClosed || socket.destroyed || !socket.writable) return;
    const header = Buffer.allocUnsafe(16);
    header.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    header.writeUInt32BE(error, 4);
    header.writeUInt32BE(request.cookieHigh, 8);
    header.writeUInt32BE(request.cookieLow, 12);
    if (error === 0 && data && data.length > 0) {
      // One writev for header and data; the data's buffer is free again once it is sent.
      socket.cork();
      socket.write(header);
      socket.write(data, () => givePayload(data));
      socket.uncork();
    } else {
      socket.write(header);
    }
  }

  /** DISC (or shutdown): read no more; answer what is in flight, then hang up. */
  private endTransmission(): void {
    this.ending = true;
    this.state = "done";
    this.held = undefined;
    this.socket.pause();
    this.maybeSettled();
  }
}

function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value, 0);
  return buffer;
}

function writeU64(buffer: Buffer, value: number, at: number): void {
  buffer.writeUInt32BE(Math.floor(value / 0x100000000), at);
  buffer.writeUInt32BE(value >>> 0, at + 4);
}
