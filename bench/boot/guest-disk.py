# bench/boot's disk jobs, run inside the guest: run.mjs puts this file in the user data of a
# NoCloud seed (after a first line `SETTINGS = {...}`), and cloud-init runs it once at first
# boot. It finds the empty data disk by its size and runs four jobs on it with O_DIRECT (the
# guest's page cache left out, so every byte crosses the virtio disk), one request at a time
# as dd issues them (the image has no fio): a sequential write of 1 MiB requests over the
# first SETTINGS["sequential_mib"] MiB, then for SETTINGS["seconds"] each, sequential 1 MiB
# reads over that region, random 4 KiB writes in the first SETTINGS["random_region_mib"] MiB
# and random 4 KiB reads in the sequentially written region. Writes end with an fsync, which
# counts. One line per job goes to the serial console, where run.mjs reads them:
# "kiln-bench-disk: <job>: <MB/s> MB/s", then "kiln-bench-disk: done", or
# "kiln-bench-disk: failed: <why>".
import mmap
import os
import random
import time
import traceback

MiB = 1024 * 1024
BLOCK = 4096
console = open("/dev/ttyS0", "w")


def say(line):
    console.write(f"kiln-bench-disk: {line}\n")
    console.flush()


def data_disk():
    """/dev/vdX of the one disk of SETTINGS['disk_bytes'] (the root and the seed are smaller)."""
    found = [name for name in os.listdir("/sys/block") if name.startswith("vd") and int(open(f"/sys/block/{name}/size").read()) * 512 == SETTINGS["disk_bytes"]]
    if len(found) != 1:
        raise RuntimeError(f"{len(found)} disks of {SETTINGS['disk_bytes']} bytes: {found}")
    return found[0]


def buffer(size):
    """Random bytes in page-aligned memory, as O_DIRECT wants them."""
    buf = mmap.mmap(-1, size)
    buf.write(os.urandom(size))
    return buf


def stamp(buf, n):
    # A different number every 64 KiB of every write, so no two of the volume's blocks hold the
    # same bytes: Kiln stores blocks by their content and would keep one copy of repeats.
    for at in range(0, len(buf), 64 * 1024):
        buf[at : at + 8] = n.to_bytes(8, "little")
        n += 1


def run(path, flags, io, count=None, seconds=None):
    """io(fd, i) for i = 0, 1, ... count times or for `seconds`, then fsync after writes; bytes per second."""
    fd = os.open(path, flags | os.O_DIRECT)
    try:
        moved = i = 0
        start = time.monotonic()
        while i < count if count is not None else time.monotonic() < start + seconds:
            moved += io(fd, i)
            i += 1
        if flags & os.O_WRONLY:
            os.fsync(fd)
        return moved / (time.monotonic() - start)
    finally:
        os.close(fd)


def main():
    name = data_disk()
    say(f"serial {open(f'/sys/block/{name}/serial').read().strip()}")
    path = f"/dev/{name}"
    big = buffer(MiB)
    small = buffer(BLOCK)
    sequential = SETTINGS["sequential_mib"]
    seconds = SETTINGS["seconds"]
    region = SETTINGS["random_region_mib"] * MiB // BLOCK
    # Reads stay in what the sequential write filled, so both disks read real blocks: the
    # sequential read goes over it again and again, for as long as the random jobs run.
    written = sequential * MiB // BLOCK

    def write_sequential(fd, i):
        stamp(big, i * 16)
        return os.pwrite(fd, big, i * MiB)

    def write_random(fd, i):
        stamp(small, i)
        return os.pwrite(fd, small, random.randrange(region) * BLOCK)

    jobs = [
        ("sequential write, 1 MiB", os.O_WRONLY, write_sequential, {"count": sequential}),
        ("sequential read, 1 MiB", os.O_RDONLY, lambda fd, i: os.preadv(fd, [big], i % sequential * MiB), {"seconds": seconds}),
        ("random write, 4 KiB", os.O_WRONLY, write_random, {"seconds": seconds}),
        ("random read, 4 KiB", os.O_RDONLY, lambda fd, i: os.preadv(fd, [small], random.randrange(written) * BLOCK), {"seconds": seconds}),
    ]
    for job, flags, io, length in jobs:
        say(f"{job}: {run(path, flags, io, **length) / 1e6:.1f} MB/s")
    say("done")


try:
    main()
except Exception:
    say("failed: " + traceback.format_exc().strip().replace("\n", " | "))
