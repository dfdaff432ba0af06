// Long synchronous work in slices. One Node thread answers every request: work that runs on it
// without a turn of the event loop (a loop over many rows, a run of SQLite statements, which
// better-sqlite3 runs synchronously) delays every other request, health checks included. Such
// work calls yieldToLoop() as it goes: within a slice it continues at once; once the slice has
// lasted SLICE_MS, the event loop takes a turn (and answers what is waiting) first.

/** Most synchronous work, in milliseconds, between two turns of the event loop. */
export const SLICE_MS = 5;

/** When the current slice began; undefined once the event loop has turned since. */
let sliceStart: number | undefined;

function beginSlice(): void {
  sliceStart = performance.now();
  // The loop turning by itself (at any await of I/O) ends the slice too.
  setImmediate(() => (sliceStart = undefined));
}

/**
 * Nothing (go on at once) within the current slice; past it, a promise that resolves after a
 * turn of the event loop, once a slice is to be had: work that waited takes turns, one slice a
 * turn between them all, rather than each beginning a slice of its own in the same turn. Not an
 * async function: the common case, within the slice, costs no promise (`await` of undefined is
 * one microtask, and hot paths test the result before awaiting).
 */
export function yieldToLoop(): Promise<void> | undefined {
  if (sliceStart === undefined) {
    // Work that arrived (or came back from I/O) while other work waits for a slice goes behind it.
    if (line.length > 0) return nextTurn();
    beginSlice();
    return undefined;
  }
  if (performance.now() - sliceStart < SLICE_MS) return undefined;
  return nextTurn();
}

/**
 * Work waiting for a slice, first come first served. Each waiter sets its own pair of immediates,
 * and each pair, when it fires, resumes whoever is first in line. Without the order, work that
 * lost the race for a slice once could lose it turn after turn (a 1,000-tag page at 32 clients:
 * p99 of 600 ms, against 120 ms in line).
 */
const line: (() => void)[] = [];

function waitForTurn(passedOver: boolean): Promise<void> {
  return new Promise((resolve) => {
    // Work the slice did not reach was first in line, and goes back there.
    if (passedOver) line.unshift(resolve);
    else line.push(resolve);
    // Twice: an immediate set while the loop handles I/O runs before the loop polls for more, so
    // only the second is sure to come after waiting requests have been read.
    setImmediate(() => setImmediate(() => line.shift()!()));
  });
}

async function nextTurn(): Promise<void> {
  for (let passedOver = false; ; passedOver = true) {
    await waitForTurn(passedOver);
    if (sliceStart === undefined) return beginSlice();
    if (performance.now() - sliceStart < SLICE_MS) return;
  }
}
