// A guest survives its server: `kiln serve` is killed with SIGKILL while a Debian guest boots
// and writes (its boot record is on the disk and synced, the rest of its start-up is still
// writing), started again on the same data folder, and the instance boots again, as after a
// host's reboot: the qemu of the killed server is gone, the first boot's record is still on the
// disk, and the root file system, read back through Kiln's NBD export of the volume once the
// instance is stopped, passes e2fsck.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import {
  DescribeInstancesCommand,
  EC2Client,
  RunInstancesCommand,
  StopInstancesCommand,
  waitUntilInstanceRunning,
  waitUntilInstanceStopped,
} from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import { pino } from "pino";
import { resolveConfig } from "../../src/config.js";
import { openDataHome } from "../../src/store/data-home.js";
import { openMetaStore } from "../../src/store/meta/database.js";
import { serveNbd } from "../../src/vm/nbd-server.js";
import { openVolumeDevice } from "../../src/vm/volume-device.js";
import { importDebianImage } from "../helpers/debian-image.js";
import { consoleShows, instanceFile, waiting } from "../helpers/guests.js";
import { LOGIN_PROMPT } from "../../src/vm/qemu-backend.js";
import { sharedStores } from "../helpers/kiln.js";
import { spawnKiln } from "../helpers/process.js";
import { run, scratch } from "../helpers/tools.js";

const credentials = { accessKeyId: "test", secretAccessKey: "test" };
const clients = (url: string) => ({
  ec2: new EC2Client({ endpoint: url, region: "us-east-1", credentials, maxAttempts: 1 }),
  s3: new S3Client({ endpoint: url, region: "us-east-1", credentials, forcePathStyle: true, maxAttempts: 1 }),
});

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "latin1").includes(") Z ");

describe("a guest and a killed server", () => {
  it("boots again after kill -9 of Kiln mid-boot, its flushed writes kept and its file system clean", async () => {
    const shared = await sharedStores();
    const dataDir = shared.folder();
    const env = { ...shared.env, KILN_INSTANCE_BACKEND: "qemu", KILN_VM_MEMORY_MAX_MIB: "1024", KILN_VM_STOP_TIMEOUT_MS: "90000" };
    const serve = () => spawnKiln(["serve", "--port", "0", "--data-dir", dataDir], env);

    const first = await serve();
    let instanceId: string;
    let rootVolume: string;
    let oldQemu: number;
    try {
      const { ec2, s3 } = clients(first.url);
      const imageId = await importDebianImage(ec2, s3);
      const { Instances } = await ec2.send(new RunInstancesCommand({ ImageId: imageId, InstanceType: "t3.micro", MinCount: 1, MaxCount: 1 }));
      instanceId = Instances![0]!.InstanceId!;
      rootVolume = Instances![0]!.BlockDeviceMappings?.[0]?.Ebs?.VolumeId ?? "";
      // The record is written and synced before the unit prints it; the guest goes on starting.
      await consoleShows(ec2, instanceId, /kiln-boot-record: boot 1/);
      oldQemu = Number(readFileSync(instanceFile(dataDir, instanceId, "qemu.pid"), "utf8"));
    } finally {
      assert.equal(await first.stop("SIGKILL"), null);
    }

    const second = await serve();
    try {
      const { ec2 } = clients(second.url);
      // Booted again by the restarted node, as after a host reboot: the first boot's record is there.
      await waitUntilInstanceRunning(waiting(ec2), { InstanceIds: [instanceId] });
      const said = await consoleShows(ec2, instanceId, /kiln-boot-record: boot 2/);
      assert.doesNotMatch(said, /kiln-boot-record: boot 1\b/, "this is the console of the new boot");
      assert.equal(alive(oldQemu), false, "the killed server's qemu is gone");
      const { Reservations } = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }));
      rootVolume ||= Reservations![0]!.Instances![0]!.BlockDeviceMappings![0]!.Ebs!.VolumeId!;
      await consoleShows(ec2, instanceId, LOGIN_PROMPT);
      await ec2.send(new StopInstancesCommand({ InstanceIds: [instanceId] }));
      await waitUntilInstanceStopped(waiting(ec2), { InstanceIds: [instanceId] });
    } finally {
      await second.stop();
    }

    // The stopped volume, served by Kiln's NBD export over the stores the servers used, read by qemu-img.
    const config = resolveConfig({ dataDir, instanceBackend: "none" }, env);
    const meta = await openMetaStore(config);
    const data = await openDataHome(config, meta.db, pino({ level: "silent" }));
    const dir = scratch();
    const copy = join(dir, "root.raw");
    try {
      const volume = await meta.db.selectFrom("volumes").select("size").where("volume_id", "=", rootVolume).executeTakeFirstOrThrow();
      const device = openVolumeDevice({ db: meta.db, chunks: data.chunks }, rootVolume, volume.size * 1024 ** 3);
      const nbd = await serveNbd(device, join(dir, "root.sock"), { readOnly: true });
      try {
        await run("qemu-img", ["convert", "-f", "raw", "-O", "raw", `nbd+unix:///?socket=${nbd.socketPath}`, copy]);
      } finally {
        await nbd.close();
        await device.close();
      }
    } finally {
      await data.chunks.close();
      await meta.close();
      await shared.drop();
    }
    const table = JSON.parse(await run("sfdisk", ["--json", copy])) as { partitiontable: { partitions: { node: string; start: number }[] } };
    const root = table.partitiontable.partitions.find((p) => p.node.endsWith("1"))!;
    const fs = `${copy}?offset=${root.start * 512}`;
    const checked = await run("e2fsck", ["-fn", fs]);
    assert.match(checked, /\d+\/\d+ files/, `e2fsck read the file system:\n${checked}`);
    const boots = (await run("debugfs", ["-R", "cat /var/lib/kiln/boots", fs])).trim().split("\n");
    assert.equal(boots.length, 2, `two boots recorded:\n${boots.join("\n")}`);
  });
});
