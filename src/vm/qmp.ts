// The QEMU Machine Protocol: JSON lines over a unix socket. Kiln asks a guest's qemu to power
// down, reset, quit, plug and unplug disks, and hears its events (SHUTDOWN, RESET, ...).
import { EventEmitter } from "node:events";
import { connect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
}

export class QmpError extends Error {
  constructor(
    readonly command: string,
    readonly qmpClass: string,
    description: string,
  ) {
    super(`${command}: ${qmpClass}: ${description}`);
  }
}

/** One QMP session; `events` emits "event" (a QmpEvent) and "close". */
export class QmpClient {
  readonly events = new EventEmitter();
  private readonly waiting: { command: string; resolve: (value: unknown) => void; reject: (error: Error) => void }[] = [];
  private buffered = "";
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (text: string) => this.received(text));
    socket.on("error", () => {});
    socket.on("close", () => {
      this.closed = true;
      for (const pending of this.waiting.splice(0)) pending.reject(new Error(`qemu closed its QMP socket before answering ${pending.command}`));
      this.events.emit("close");
    });
  }

  /** Connects to the socket (retrying while qemu makes it, up to `timeoutMs`) and leaves capabilities negotiation. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path, () => resolve(s));
          s.once("error", reject);
        });
        const client = new QmpClient(socket);
        await client.greeting();
        await client.execute("qmp_capabilities");
        return client;
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`no QMP socket at ${path}: ${(error as Error).message}`);
        await sleep(50);
      }
    }
  }

  private greeted?: () => void;
  private greeting(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.greeted = resolve;
      this.events.once("close", () => reject(new Error("qemu closed its QMP socket before its greeting")));
    });
  }

  private received(text: string): void {
    this.buffered += text;
    let newline = this.buffered.indexOf("\n");
    while (newline >= 0) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      newline = this.buffered.indexOf("\n");
      if (!line) continue;
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line);
      } catch {
        continue;
      }
      if ("QMP" in message) this.greeted?.();
      else if ("event" in message) this.events.emit("event", message as unknown as QmpEvent);
      else if ("return" in message) this.waiting.shift()?.resolve(message.return);
      else if ("error" in message) {
        const pending = this.waiting.shift();
        const error = message.error as { class?: string; desc?: string };
        pending?.reject(new QmpError(pending.command, error.class ?? "GenericError", error.desc ?? ""));
      }
    }
  }

  /** Runs a command; its answer, or a QmpError. Answers come in the order commands were sent. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(new Error(`qemu's QMP socket is closed (${command})`));
    return new Promise<T>((resolve, reject) => {
      this.waiting.push({ command, resolve: resolve as (value: unknown) => void, reject });
      this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
