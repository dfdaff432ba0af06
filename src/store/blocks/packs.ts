// Pack files: chunks appended, one 512 KiB slot each, to large files under the packs folder, and
// located by the metadata store's chunk_locations rows. One file per chunk cost a create, a sync
// and a rename per 512 KiB, which on a busy import took as long as the writes themselves; a pack
// takes a write per chunk and one sync per group of them.
//
// A chunk is durable when put returns: writes that finish while a sync is under way wait for the
// next one, and each sync then commits the locations of every chunk it covered (group commit).
// A location is committed only after its bytes are synced, so a crash leaves at most unnamed
// slots, which collection reclaims. Slots are written with O_DIRECT where the file system allows
// it: a chunk is seldom read soon after, so a copy through the page cache is pure cost.
import { randomBytes } from "node:crypto";
import { constants, readSync, type Dir } from "node:fs";
import { mkdir, open, opendir, stat, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { MetaDb } from "../meta/database.js";
import { BLOCK_SIZE, type ChunkLocation } from "./chunks.js";

/** A slot holds one chunk. */
export const SLOT_BYTES = BLOCK_SIZE;
/** Slots per pack: 256 MiB, so collection can give space back a pack at a time. */
export const PACK_SLOTS = 512;

export interface Location extends ChunkLocation {
  chunk: string;
}

export const packPath = (root: string, pack: string) => join(root, `${pack}.pack`);

interface OpenPack {
  id: string;
  handle: FileHandle;
  direct: boolean;
  nextSlot: number;
  /** Slots handed out whose location is not committed yet. */
  outstanding: number;
}

interface Written {
  location: Location;
  pack: OpenPack;
  /** Relocations (compaction) replace a location; new chunks never do. */
  replace: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

/** Appends chunks to the current pack and commits their locations in groups. */
export class PackAppender {
  private current: OpenPack | undefined;
  /** Packs open for writing: the current one, and full ones whose last slots are not committed yet. */
  private readonly active = new Set<OpenPack>();
  private opening: Promise<OpenPack> | undefined;
  private written: Written[] = [];
  private committing: Promise<void> | undefined;
  /** File systems that refuse O_DIRECT (tmpfs on older kernels, some network file systems). */
  private buffered = false;

  constructor(
    private readonly root: string,
    private readonly db: MetaDb,
    private readonly packSlots = PACK_SLOTS,
  ) {}

  /** Packs this appender may still write into; collection leaves them alone. */
  openPacks(): Set<string> {
    return new Set([...this.active].map((pack) => pack.id));
  }

  /**
   * Writes `data` (one slot, page aligned) to a fresh slot and resolves once it is synced and its
   * location committed. With `replace`, an existing location of the chunk is moved to it.
   */
  async append(chunk: string, data: Buffer, replace = false): Promise<void> {
    const pack = await this.packWithRoom();
    const slot = pack.nextSlot++;
    pack.outstanding++;
    if (pack.nextSlot === this.packSlots) this.current = undefined;
    try {
      await this.writeSlot(pack, data, slot);
    } catch (error) {
      this.settled(pack);
      throw error;
    }
    await new Promise<void>((resolve, reject) => {
      this.written.push({ location: { chunk, pack: pack.id, slot }, pack, replace, resolve, reject });
      this.committing ??= this.commitLoop().finally(() => (this.committing = undefined));
    });
  }

  /** Waits for every write under way to be committed. */
  async drain(): Promise<void> {
    while (this.committing) await this.committing;
  }

  /** Closes the current pack; the next append starts a new one (after a reset, or to stop). */
  async restart(): Promise<void> {
    await this.drain();
    const pack = this.current;
    this.current = undefined;
    if (pack && pack.outstanding === 0) {
      this.active.delete(pack);
      await pack.handle.close();
    }
  }

  private async commitLoop(): Promise<void> {
    while (this.written.length > 0) {
      const batch = this.written;
      this.written = [];
      try {
        const packs = new Set(batch.map((w) => w.pack));
        await Promise.all([...packs].map((pack) => pack.handle.datasync()));
        await commitLocations(this.db, batch, Date.now());
        for (const w of batch) w.resolve();
      } catch (error) {
        for (const w of batch) w.reject(error);
      } finally {
        for (const w of batch) this.settled(w.pack);
      }
    }
  }

  /** One slot of `pack` is committed or abandoned; a full pack is closed after its last. */
  private settled(pack: OpenPack): void {
    pack.outstanding--;
    if (pack.outstanding > 0 || pack === this.current) return;
    this.active.delete(pack);
    void pack.handle.close().catch(() => {});
  }

  private async packWithRoom(): Promise<OpenPack> {
    if (this.current) return this.current;
    this.opening ??= this.openPack().finally(() => (this.opening = undefined));
    const pack = await this.opening;
    // Another caller may have filled it while this one waited.
    return pack.nextSlot < this.packSlots ? pack : this.packWithRoom();
  }

  private async openPack(): Promise<OpenPack> {
    await mkdir(this.root, { recursive: true });
    const id = `${Date.now().toString(36)}-${randomBytes(6).toString("hex")}`;
    const path = packPath(this.root, id);
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
    let direct = !this.buffered && constants.O_DIRECT !== undefined;
    let handle: FileHandle;
    try {
      handle = await open(path, flags | (direct ? constants.O_DIRECT : 0), 0o644);
    } catch (error) {
      if (!direct || (error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
      this.buffered = true;
      direct = false;
      handle = await open(path, flags, 0o644);
    }
    // The pack's name must survive a crash as surely as the slots synced into it.
    await syncDirectory(this.root);
    const pack: OpenPack = { id, handle, direct, nextSlot: 0, outstanding: 0 };
    this.current = pack;
    this.active.add(pack);
    return pack;
  }

  private async writeSlot(pack: OpenPack, data: Buffer, slot: number): Promise<void> {
    try {
      await writeAll(pack.handle, data, slot * SLOT_BYTES);
    } catch (error) {
      // Some file systems accept O_DIRECT at open and refuse the write: go through the cache.
      if (!pack.direct || (error as NodeJS.ErrnoException).code !== "EINVAL") throw error;
      this.buffered = true;
      const old = pack.handle;
      pack.handle = await open(packPath(this.root, pack.id), constants.O_WRONLY);
      pack.direct = false;
      void old.close().catch(() => {});
      await writeAll(pack.handle, data, slot * SLOT_BYTES);
    }
  }
}

async function writeAll(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length; ) {
    done += (await handle.write(data, done, data.length - done, position + done)).bytesWritten;
  }
}

async function syncDirectory(path: string): Promise<void> {
  const dir = await open(path, constants.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

async function commitLocations(db: MetaDb, batch: readonly Written[], now: number): Promise<void> {
  const rows = batch.map((w) => ({ ...w.location, stored_at: now }));
  const moved = rows.filter((_, i) => batch[i]!.replace);
  const fresh = rows.filter((_, i) => !batch[i]!.replace);
  await db.transaction().execute(async (tx) => {
    // A chunk put by two writers at once (another node, or a relocation racing a put) keeps the
    // first location; the other slot is unnamed and collection reclaims it.
    for (let i = 0; i < fresh.length; i += 200) {
      await tx
        .insertInto("chunk_locations")
        .values(fresh.slice(i, i + 200))
        .onConflict((c) => c.column("chunk").doNothing())
        .execute();
    }
    for (const row of moved) {
      await tx.updateTable("chunk_locations").set({ pack: row.pack, slot: row.slot }).where("chunk", "=", row.chunk).execute();
    }
  });
}

interface ReadHandle {
  opened: Promise<FileHandle>;
  /** Reads under way on it; a handle let go is closed after its last. */
  users: number;
  letGo: boolean;
}

/**
 * Reads this long or shorter are made on the event loop (one pread): from the page cache that
 * takes microseconds, where a trip through the thread pool cost about 50 on two cores (fio reading
 * 4 KiB at a time through a volume's NBD export: 115 µs a request, 82 without the trip). A read
 * from the disk itself holds the loop for one small read. Longer ones go to the thread pool.
 */
const READ_AT_ONCE_MAX = 64 * 1024;

/**
 * Reads slots through pack files kept open (a few dozen, least recently used let go): a guest
 * reading its disk a few KiB at a time would otherwise open and close a file per read. A handle
 * on a pack that collection deleted still reads the slot's bytes, which never change; only a
 * pack not open already and gone reads as moved.
 */
export class PackReader {
  private readonly handles = new Map<string, ReadHandle>();

  constructor(
    private readonly root: string,
    private readonly kept = 64,
  ) {}

  /** The slot's bytes (into `data` when given, as many as it holds, from `offset`); `undefined` when the pack is gone. */
  async read(pack: string, slot: number, data: Buffer = Buffer.allocUnsafe(SLOT_BYTES), offset = 0): Promise<Buffer | undefined> {
    const entry = this.take(pack);
    try {
      let handle: FileHandle;
      try {
        handle = await entry.opened;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw error;
      }
      let done = 0;
      while (done < data.length) {
        const length = data.length - done;
        const position = slot * SLOT_BYTES + offset + done;
        const bytesRead =
          length <= READ_AT_ONCE_MAX ? readSync(handle.fd, data, done, length, position) : (await handle.read(data, done, length, position)).bytesRead;
        if (bytesRead === 0) throw new Error(`pack ${pack} ends before slot ${slot}`);
        done += bytesRead;
      }
      return data;
    } finally {
      this.give(entry);
    }
  }

  /** Lets go of the pack's handle (collection deleted it: its space comes back once no read holds it). */
  forget(pack: string): void {
    const entry = this.handles.get(pack);
    if (entry) this.letGo(pack, entry);
  }

  /** Lets go of every handle. */
  close(): void {
    for (const [pack, entry] of [...this.handles]) this.letGo(pack, entry);
  }

  private take(pack: string): ReadHandle {
    let entry = this.handles.get(pack);
    if (entry) {
      this.handles.delete(pack);
    } else {
      entry = { opened: open(packPath(this.root, pack), constants.O_RDONLY), users: 0, letGo: false };
      // A pack that cannot be opened is not remembered: it may appear, and the error is the read's.
      entry.opened.catch(() => this.handles.get(pack) === entry && this.handles.delete(pack));
    }
    this.handles.set(pack, entry);
    entry.users++;
    if (this.handles.size > this.kept) {
      const [oldest, old] = this.handles.entries().next().value!;
      this.letGo(oldest, old);
    }
    return entry;
  }

  private give(entry: ReadHandle): void {
    entry.users--;
    if (entry.letGo && entry.users === 0) this.closeHandle(entry);
  }

  private letGo(pack: string, entry: ReadHandle): void {
    if (this.handles.get(pack) === entry) this.handles.delete(pack);
    entry.letGo = true;
    if (entry.users === 0) this.closeHandle(entry);
  }

  private closeHandle(entry: ReadHandle): void {
    entry.opened.then(
      (handle) => handle.close().catch(() => {}),
      () => {},
    );
  }
}

export interface PackFile {
  pack: string;
  slots: number;
  modifiedMs: number;
}

/** Every pack file under `root`. */
export async function* packFiles(root: string): AsyncGenerator<PackFile> {
  let dir: Dir;
  try {
    dir = await opendir(root);
  } catch {
    return;
  }
  for await (const entry of dir) {
    if (!entry.isFile() || !entry.name.endsWith(".pack")) continue;
    const info = await stat(join(root, entry.name)).catch(() => undefined);
    if (info) yield { pack: entry.name.slice(0, -".pack".length), slots: Math.ceil(info.size / SLOT_BYTES), modifiedMs: info.mtimeMs };
  }
}
