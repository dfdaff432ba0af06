// Readers hold the blobs they read: a blob removed while held (its object replaced or deleted
// meanwhile) goes only when its last reader lets go, so a read under way is never cut short.
export class BlobHolds {
  private readonly readers = new Map<string, number>();
  private readonly doomed = new Set<string>();

  constructor(private readonly removeNow: (id: string) => Promise<void>) {}

  hold(id: string): void {
    this.readers.set(id, (this.readers.get(id) ?? 0) + 1);
  }

  /** Lets go of a blob; resolves once it is removed, when it was the last reader of a removed blob. */
  async release(id: string): Promise<void> {
    const left = (this.readers.get(id) ?? 1) - 1;
    if (left > 0) return void this.readers.set(id, left);
    this.readers.delete(id);
    // A failed removal leaves a blob no row names, which the next start's sweep removes.
    if (this.doomed.delete(id)) await this.removeNow(id).catch(() => {});
  }

  /** Removes the blob now, or once its readers finish. */
  async remove(id: string): Promise<void> {
    if (this.readers.has(id)) this.doomed.add(id);
    else await this.removeNow(id);
  }
}
