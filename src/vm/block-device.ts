// What a guest's disk is to the NBD server (vm/nbd-server.ts): a volume's bytes, addressed by
// offset, with a write cache the guest empties by FLUSH. store/blocks/volume-device.ts is the
// one over a volume's layers in the chunk store; tests use one over a file.

export interface BlockDevice {
  /** The size in bytes, a multiple of 512. */
  readonly size: number;
  /** `length` bytes from `offset`, within the size: into `into` (of `length` bytes) when given. */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  /**
   * Writes `data` at `offset`; with `fua` it is durable when this resolves, else once a flush is.
   * The device holds nothing of `data` once this resolves: the caller reuses it.
   */
  write(offset: number, data: Buffer, fua?: boolean): Promise<void>;
  /** Makes `length` bytes from `offset` read as zeros (sparse where it can); `fua` as for write. */
  writeZeroes(offset: number, length: number, fua?: boolean): Promise<void>;
  /** The guest no longer needs these bytes: they may read as zeros from now on, or keep their data. */
  trim(offset: number, length: number): Promise<void>;
  /** Resolves once every write that resolved before the call is durable. */
  flush(): Promise<void>;
}
