// CreateStoreImageTask's work: an AMI's manifest and the non-zero blocks of its snapshots,
// streamed as a Kiln image archive into a blob, which becomes the object <ami-id>.bin only once
// it is whole. A stop part-way leaves no object (the blob's leftovers are swept at the next start).
import { Readable } from "node:stream";
import { writeArchive, type ArchivedBlock, type ArchiveManifest, type ArchivedMapping } from "../formats/image-archive.js";
import { BLOCK_SIZE, type ChunkStore } from "../store/blocks/chunks.js";
import type { MetaDb } from "../store/meta/database.js";
import { visibleImages, type ImageRecord } from "../store/meta/images.js";
import { countResolvedBlocks } from "../store/meta/manifests.js";
import { snapshotById } from "../store/meta/snapshots.js";
import { nonZeroBlocks } from "../store/blocks/snapshot-source.js";
import type { TaskRow } from "../store/meta/tasks.js";
import type { BlobStore } from "../store/objects/blobs.js";
import { TaskFailure, type TaskIo, type TaskKind } from "./runner.js";
import { commitTaskOutput } from "./task-object.js";

export const STORE_TASK = "store-image";

export interface StoreParams {
  imageId: string;
  bucket: string;
  key: string;
  objectTags: [string, string][];
}

/** The archive manifest for an image; snapshots in the order its devices first name them. */
export async function archiveManifest(db: MetaDb, record: ImageRecord): Promise<{ manifest: ArchiveManifest; snapshotIds: string[] }> {
  const { image, devices } = record;
  const snapshotIds: string[] = [];
  const mappings: ArchivedMapping[] = devices.map((device) => {
    if (device.no_device) return { deviceName: device.device_name, noDevice: true };
    if (device.virtual_name) return { deviceName: device.device_name, virtualName: device.virtual_name };
    let snapshot: number | undefined;
    if (device.snapshot_id) {
      snapshot = snapshotIds.indexOf(device.snapshot_id);
      if (snapshot < 0) snapshot = snapshotIds.push(device.snapshot_id) - 1;
    }
    return {
      deviceName: device.device_name,
      ebs: {
        snapshot,
        volumeSize: device.volume_size ?? undefined,
        volumeType: device.volume_type ?? undefined,
        iops: device.iops ?? undefined,
        throughput: device.throughput ?? undefined,
        deleteOnTermination: device.delete_on_termination === null ? undefined : Boolean(device.delete_on_termination),
        encrypted: device.encrypted === null ? undefined : Boolean(device.encrypted),
      },
    };
  });
  const snapshots = [];
  for (const snapshotId of snapshotIds) {
    const row = await snapshotById(db, snapshotId);
    if (!row) throw new TaskFailure(`The snapshot ${snapshotId} of ${image.image_id} no longer exists.`, "Client.InvalidSnapshot.NotFound");
    snapshots.push({
      sourceSnapshotId: snapshotId,
      volumeSize: row.volume_size,
      description: row.description,
      blocks: await countResolvedBlocks(db, snapshotId),
    });
  }
  const manifest: ArchiveManifest = {
    format: "kiln-image-archive",
    version: 1,
    blockSize: BLOCK_SIZE,
    storedAt: new Date().toISOString(),
    image: {
      sourceImageId: image.image_id,
      sourceRegion: image.region,
      ownerId: image.account_id,
      name: image.name,
      description: image.description,
      architecture: image.architecture,
      virtualizationType: image.virtualization_type,
      rootDeviceName: image.root_device_name,
      bootMode: image.boot_mode ?? undefined,
      enaSupport: Boolean(image.ena_support),
      sriovNetSupport: image.sriov_net_support ?? undefined,
      tpmSupport: image.tpm_support ?? undefined,
      imdsSupport: image.imds_support ?? undefined,
      uefiData: image.uefi_data ?? undefined,
      platform: image.platform ?? undefined,
      platformDetails: image.platform_details ?? undefined,
      usageOperation: image.usage_operation ?? undefined,
      kernelId: image.kernel_id ?? undefined,
      ramdiskId: image.ramdisk_id ?? undefined,
      creationDate: image.creation_date,
      blockDeviceMappings: mappings,
    },
    snapshots,
  };
  return { manifest, snapshotIds };
}

/** Every non-zero block of the snapshots, in order. */
async function* archivedBlocks(db: MetaDb, chunks: ChunkStore, snapshotIds: string[], io: TaskIo, total: number): AsyncGenerator<ArchivedBlock> {
  let done = 0;
  for (const [snapshot, snapshotId] of snapshotIds.entries()) {
    for await (const block of nonZeroBlocks({ db, chunks }, snapshotId, io.signal)) {
      yield { snapshot, block: block.index, sha256: block.chunk, data: block.data };
      io.progress((++done / Math.max(1, total)) * 100);
    }
  }
}

export function storeImageKind(deps: { db: MetaDb; chunks: ChunkStore; blobs: BlobStore }): TaskKind {
  const { db, chunks, blobs } = deps;
  return {
    async run(task: TaskRow, io: TaskIo) {
      const params = JSON.parse(task.params) as StoreParams;
      const [record] = await visibleImages(db, { accountId: task.account_id, region: task.region }, { ids: [params.imageId] });
      if (!record) throw new TaskFailure(`The image ${params.imageId} no longer exists.`, "Client.InvalidAMIID.NotFound");
      const { manifest, snapshotIds } = await archiveManifest(db, record);
      const total = manifest.snapshots.reduce((sum, s) => sum + s.blocks, 0);
      let digest: Buffer = Buffer.alloc(0);
      const archive = Readable.from(writeArchive(manifest, archivedBlocks(db, chunks, snapshotIds, io, total), (d) => (digest = d)));
      const blob = await blobs.write(archive);
      const now = new Date().toISOString();
      const metadata = {
        "ami-name": record.image.name,
        "ami-description": record.image.description,
        "ami-registration-date": record.image.creation_date,
        "ami-owner-account": record.image.account_id,
        "ami-store-date": now,
      };
      const object = {
        bucket: params.bucket,
        key: params.key,
        // S3 tags a multipart upload (AWS stores AMIs so) with "<hash>-<parts>"; Kiln's hash is the archive's digest.
        etag: `"${digest.subarray(0, 16).toString("hex")}-1"`,
        content_type: "application/octet-stream",
        metadata: JSON.stringify(metadata),
        tags: JSON.stringify(params.objectTags),
        last_modified: now,
      };
      await commitTaskOutput({ db, blobs }, task, io.signal, blob, object, `The bucket ${params.bucket} no longer exists.`);
    },
  };
}
