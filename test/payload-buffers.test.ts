// NBD payload buffers (vm/payload-buffers.ts): a buffer given back serves the next request of
// about its size; a buffer the pool did not hand out (a device's own, still in use) never does.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { givePayload, takePayload } from "../src/vm/payload-buffers.js";

const MiB = 1024 * 1024;

describe("payload buffers", () => {
  it("reuses a buffer given back, and only one it handed out", () => {
    const first = takePayload(MiB);
    assert.equal(first.length, MiB);
    givePayload(first);
    const second = takePayload(MiB - 4096);
    assert.equal(second.length, MiB - 4096);
    assert.equal(second.buffer, first.buffer, "the next request of about its size gets it again");
    givePayload(second);
    givePayload(second); // twice: taken back once
    const third = takePayload(MiB);
    const fourth = takePayload(MiB);
    assert.notEqual(third.buffer, fourth.buffer, "a buffer given back twice is handed out once");

    const foreign = Buffer.alloc(MiB);
    givePayload(foreign);
    assert.notEqual(takePayload(MiB).buffer, foreign.buffer, "a buffer it did not hand out is left alone");
    assert.equal(takePayload(512).length, 512);
  });
});
