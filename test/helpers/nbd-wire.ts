// A bare NBD client written from doc/proto.md, for what the real clients never send: pipelined
// requests with chosen cookies, requests out of bounds, and hostile bytes. Every read has a
// deadline, so a server that goes quiet fails the test rather than hanging it.
import { connect, type Socket } from "node:net";

export const NBD = {
  OPT_EXPORT_NAME: 1,
  OPT_ABORT: 2,
  OPT_LIST: 3,
  OPT_STARTTLS: 5,
  OPT_INFO: 6,
  OPT_GO: 7,
  OPT_STRUCTURED_REPLY: 8,
  OPT_SET_META_CONTEXT: 10,
  REP_ACK: 1,
  REP_SERVER: 2,
  REP_INFO: 3,
  REP_ERR_UNSUP: 0x80000001,
  REP_ERR_INVALID: 0x80000003,
  REP_ERR_UNKNOWN: 0x80000006,
  REP_ERR_TOO_BIG: 0x80000009,
  INFO_EXPORT: 0,
  INFO_NAME: 1,
  INFO_BLOCK_SIZE: 3,
  CMD_READ: 0,
  CMD_WRITE: 1,
  CMD_DISC: 2,
  CMD_FLUSH: 3,
  CMD_TRIM: 4,
  CMD_CACHE: 5,
  CMD_WRITE_ZEROES: 6,
  CMD_BLOCK_STATUS: 7,
  FLAG_FUA: 1,
  FLAG_NO_HOLE: 2,
  FLAG_DF: 4,
  TX_HAS_FLAGS: 1,
  TX_READ_ONLY: 2,
  TX_SEND_FLUSH: 4,
  TX_SEND_FUA: 8,
  TX_SEND_TRIM: 32,
  TX_SEND_WRITE_ZEROES: 64,
  EPERM: 1,
  EIO: 5,
  EINVAL: 22,
  ENOSPC: 28,
} as const;

const IHAVEOPT = Buffer.from("IHAVEOPT", "latin1");
const DEADLINE_MS = 5000;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface Reply {
  error: number;
  cookie: bigint;
  data?: Buffer;
}

export class WireClient {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private wake: (() => void) | undefined;
  /** Resolves when the server closes the connection (or it breaks). */
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      this.wake?.();
    });
    this.closed = new Promise((resolve) => {
      const end = () => {
        this.ended = true;
        this.wake?.();
        resolve();
      };
      socket.on("end", end);
      socket.on("close", end);
      socket.on("error", end);
    });
  }

  static connect(path: string): Promise<WireClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once("error", reject);
      socket.once("connect", () => {
        socket.off("error", reject);
        resolve(new WireClient(socket));
      });
    });
  }

  /** Exactly `n` bytes, or an error if the connection ends or nothing comes in time. */
  async read(n: number, deadlineMs = DEADLINE_MS): Promise<Buffer> {
    const deadline = Date.now() + deadlineMs;
    while (this.buffered < n) {
      if (this.ended) throw new Error(`connection closed with ${this.buffered} of ${n} bytes`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${n} bytes within ${deadlineMs} ms (have ${this.buffered})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
    }
    const all = Buffer.concat(this.chunks);
    this.chunks.length = 0;
    if (all.length > n) this.chunks.push(all.subarray(n));
    this.buffered = all.length - n;
    return all.subarray(0, n);
  }

  /** Whether the server hangs up within the deadline (bytes it sent before are ignored). */
  async hungUp(deadlineMs = DEADLINE_MS): Promise<boolean> {
    return Promise.race([this.closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), deadlineMs).unref())]);
  }

  send(...buffers: Buffer[]): void {
    this.socket.write(Buffer.concat(buffers));
  }

  close(): void {
    this.socket.destroy();
  }

  /** Reads the greeting and answers it with `clientFlags`; the handshake flags the server sent. */
  async handshake(clientFlags = 3): Promise<number> {
    const greeting = await this.read(18);
    if (greeting.toString("latin1", 0, 16) !== "NBDMAGICIHAVEOPT") throw new Error(`not an NBD newstyle greeting: ${greeting.toString("hex")}`);
    this.send(u32(clientFlags));
    return greeting.readUInt16BE(16);
  }

  sendOption(option: number, data: Buffer = Buffer.alloc(0), length = data.length): void {
    this.send(IHAVEOPT, u32(option), u32(length), data);
  }

  async optionReply(): Promise<OptionReply> {
    const head = await this.read(20);
    if (head.readBigUInt64BE(0) !== 0x3e889045565a9n) throw new Error(`bad option reply magic ${head.toString("hex", 0, 8)}`);
    const length = head.readUInt32BE(16);
    return { option: head.readUInt32BE(8), type: head.readUInt32BE(12), data: length > 0 ? await this.read(length) : Buffer.alloc(0) };
  }

  /** NBD_OPT_INFO or NBD_OPT_GO: the replies up to and including the final one. */
  async info(option: number, name: string, requests: number[] = [NBD.INFO_BLOCK_SIZE]): Promise<OptionReply[]> {
    const nameBytes = Buffer.from(name, "utf8");
    const data = Buffer.alloc(4 + nameBytes.length + 2 + 2 * requests.length);
    data.writeUInt32BE(nameBytes.length, 0);
    nameBytes.copy(data, 4);
    data.writeUInt16BE(requests.length, 4 + nameBytes.length);
    for (const [i, request] of requests.entries()) data.writeUInt16BE(request, 6 + nameBytes.length + 2 * i);
    this.sendOption(option, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.optionReply();
      replies.push(reply);
      if (reply.type !== NBD.REP_INFO) return replies;
    }
  }

  /** Handshake and NBD_OPT_GO: the export's size and transmission flags. */
  async go(name = ""): Promise<{ size: number; flags: number }> {
    await this.handshake();
    const replies = await this.info(NBD.OPT_GO, name);
    const last = replies.at(-1)!;
    if (last.type !== NBD.REP_ACK) throw new Error(`NBD_OPT_GO answered ${last.type.toString(16)}: ${last.data.toString()}`);
    const exportInfo = replies.find((reply) => reply.type === NBD.REP_INFO && reply.data.readUInt16BE(0) === NBD.INFO_EXPORT);
    if (!exportInfo) throw new Error("no NBD_INFO_EXPORT");
    return { size: Number(exportInfo.data.readBigUInt64BE(2)), flags: exportInfo.data.readUInt16BE(10) };
  }

  request(type: number, options: { cookie?: bigint; flags?: number; offset?: number | bigint; length?: number; data?: Buffer; magic?: number } = {}): void {
    const head = Buffer.alloc(28);
    head.writeUInt32BE(options.magic ?? 0x25609513, 0);
    head.writeUInt16BE(options.flags ?? 0, 4);
    head.writeUInt16BE(type, 6);
    head.writeBigUInt64BE(options.cookie ?? 0n, 8);
    head.writeBigUInt64BE(BigInt(options.offset ?? 0), 16);
    head.writeUInt32BE(options.length ?? options.data?.length ?? 0, 24);
    this.send(options.data ? Buffer.concat([head, options.data]) : head);
  }

  /** A simple reply; `readLengths` maps a READ's cookie to its length, for the data that follows a success. */
  async reply(readLengths: ReadonlyMap<bigint, number> = new Map()): Promise<Reply> {
    const head = await this.read(16);
    if (head.readUInt32BE(0) !== 0x67446698) throw new Error(`bad reply magic ${head.toString("hex", 0, 4)}`);
    const error = head.readUInt32BE(4);
    const cookie = head.readBigUInt64BE(8);
    const length = readLengths.get(cookie);
    if (error === 0 && length) return { error, cookie, data: await this.read(length) };
    return { error, cookie };
  }

  /** One request and its reply, nothing else in flight. */
  async call(type: number, options: { flags?: number; offset?: number | bigint; length?: number; data?: Buffer } = {}): Promise<Reply> {
    this.request(type, { ...options, cookie: 77n });
    const reply = await this.reply(new Map(type === NBD.CMD_READ ? [[77n, options.length ?? 0]] : []));
    if (reply.cookie !== 77n) throw new Error(`reply for cookie ${reply.cookie}, not 77`);
    return reply;
  }
}

export function u32(value: number): Buffer {
  const buffer = Buffer.alloc(4);
  buffer.writeUInt32BE(value >>> 0, 0);
  return buffer;
}
