// The EBS direct APIs: snapshots written and read block by block, 512 KiB at a time.
import { createHash } from "node:crypto";
import type {
  Block,
  ChangedBlock,
  CompleteSnapshotResponse,
  ListChangedBlocksResponse,
  ListSnapshotBlocksResponse,
  StartSnapshotRequest,
  StartSnapshotResponse,
} from "@aws-sdk/client-ebs";
import { newId } from "../../domain/ids.js";
import { yieldToLoop } from "../../event-loop.js";
import { ApiError } from "../../protocol/errors.js";
import { BLOCK_SIZE, ZERO_BLOCK_SHA256, ZERO_CHUNK, type ChunkStore } from "../../store/blocks/chunks.js";
import type { MetaStore } from "../../store/meta/database.js";
import {
  blockRows,
  getBlock,
  getSnapshot,
  insertSnapshot,
  newSnapshotRow,
  listBlocks,
  writtenBlocks,
  putBlock,
  setSnapshotState,
  type BlockRow,
  type SnapshotRow,
} from "../../store/meta/snapshots.js";
import { putTags } from "../../store/meta/tags.js";

export interface EbsContext {
  readonly accountId: string;
  readonly region: string;
  readonly meta: MetaStore;
  readonly chunks: ChunkStore;
}

/** Blocks per GiB. */
const BLOCKS_PER_GIB = (1024 * 1024 * 1024) / BLOCK_SIZE;
const MAX_VOLUME_GIB = 65536;
const TOKEN_LIFETIME_SECONDS = 3600;
/** The id AWS reports for snapshots that were not taken from a volume. */

const invalid = (message: string, reason = "INVALID_PARAMETER_VALUE") => new ApiError("ValidationException", message, reason);

async function snapshotOf(ctx: EbsContext, snapshotId: string): Promise<SnapshotRow> {
  if (!/^snap-([0-9a-f]{8}|[0-9a-f]{17})$/.test(snapshotId)) throw invalid(`The snapshot ID '${snapshotId}' is malformed.`, "INVALID_SNAPSHOT_ID");
  const snapshot = await getSnapshot(ctx.meta.db, ctx, snapshotId);
  if (!snapshot) throw new ApiError("ResourceNotFoundException", `The snapshot '${snapshotId}' does not exist.`, "SNAPSHOT_NOT_FOUND");
  return snapshot;
}

function blockIndexOf(snapshot: SnapshotRow, text: string): number {
  const index = /^[0-9]{1,10}$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(index) || index >= snapshot.volume_size * BLOCKS_PER_GIB) {
    throw invalid(`Block index ${text} is outside the snapshot's ${snapshot.volume_size} GiB.`, "INVALID_BLOCK");
  }
  return index;
}

/** A block token names the chunk a block held when it was listed. */
const blockToken = (chunk: string) => Buffer.from(chunk, "hex").toString("base64");

function startResponse(snapshot: SnapshotRow, tags: { Key: string; Value: string }[]): StartSnapshotResponse {
  return {
    SnapshotId: snapshot.snapshot_id,
    OwnerId: snapshot.account_id,
    Status: snapshot.state,
    StartTime: new Date(snapshot.start_time),
    VolumeSize: snapshot.volume_size,
    BlockSize: BLOCK_SIZE,
    Description: snapshot.description || undefined,
    ParentSnapshotId: snapshot.parent_snapshot_id ?? undefined,
    KmsKeyArn: snapshot.kms_key_id ?? undefined,
    Tags: tags.length ? tags : undefined,
    SseType: snapshot.encrypted ? "sse-ebs" : "none",
  };
}

export async function startSnapshot(ctx: EbsContext, input: StartSnapshotRequest): Promise<StartSnapshotResponse> {
  const size = input.VolumeSize;
  if (typeof size !== "number" || !Number.isInteger(size) || size < 1 || size > MAX_VOLUME_GIB) {
    throw invalid(`VolumeSize must be a whole number of GiB from 1 to ${MAX_VOLUME_GIB}.`, "INVALID_VOLUME_SIZE");
  }
  const tags = (input.Tags ?? []).map((tag) => {
    if (!tag.Key || tag.Key.length > 127 || tag.Key.toLowerCase().startsWith("aws:") || (tag.Value ?? "").length > 255)
      throw invalid(`The tag '${tag.Key ?? ""}' is not valid.`, "INVALID_TAG");
    return { Key: tag.Key, Value: tag.Value ?? "" };
  });
  if (input.ClientToken) {
    const earlier = await getSnapshot(ctx.meta.db, ctx, input.ClientToken, "client_token");
    if (earlier) return startResponse(earlier, tags);
  }
  let parent: SnapshotRow | undefined;
  if (input.ParentSnapshotId) {
    parent = await snapshotOf(ctx, input.ParentSnapshotId);
    if (parent.state !== "completed") throw invalid(`The parent snapshot '${parent.snapshot_id}' is not completed.`, "INVALID_DEPENDENCY_REQUEST");
    if (size < parent.volume_size) throw invalid(`VolumeSize ${size} is smaller than the parent snapshot's ${parent.volume_size} GiB.`, "INVALID_VOLUME_SIZE");
  }
  const snapshot = newSnapshotRow({
    account_id: ctx.accountId,
    region: ctx.region,
    snapshot_id: newId("snap"),
    volume_size: size,
    state: "pending",
    progress: "0%",
    description: input.Description ?? "",
    encrypted: input.Encrypted || parent?.encrypted ? 1 : 0,
    kms_key_id: input.KmsKeyArn ?? parent?.kms_key_id ?? null,
    parent_snapshot_id: parent?.snapshot_id ?? null,
    client_token: input.ClientToken ?? null,
  });
  await insertSnapshot(ctx.meta.db, snapshot);
  if (tags.length) {
    await putTags(
      ctx.meta.db,
      ctx,
      [{ id: snapshot.snapshot_id, type: "snapshot" }],
      tags.map((t) => ({ key: t.Key, value: t.Value })),
      50,
    );
  }
  return startResponse(snapshot, tags);
}

export interface PutBlockHeaders {
  dataLength?: string;
  checksum?: string;
  checksumAlgorithm?: string;
}

export async function putSnapshotBlock(
  ctx: EbsContext,
  snapshotId: string,
  indexText: string,
  headers: PutBlockHeaders,
  data: Buffer,
): Promise<{ checksum: string }> {
  const snapshot = await snapshotOf(ctx, snapshotId);
  const index = blockIndexOf(snapshot, indexText);
  if (snapshot.state !== "pending")
    throw new ApiError("ConflictException", `The snapshot '${snapshotId}' is ${snapshot.state}; blocks can be written only while it is pending.`);
  if (headers.dataLength === undefined || headers.checksum === undefined || headers.checksumAlgorithm === undefined) {
    throw invalid("PutSnapshotBlock requires x-amz-Data-Length, x-amz-Checksum and x-amz-Checksum-Algorithm.");
  }
  if (headers.checksumAlgorithm !== "SHA256") throw invalid(`Checksum algorithm ${headers.checksumAlgorithm} is not supported; use SHA256.`);
  if (Number(headers.dataLength) !== BLOCK_SIZE || data.length !== BLOCK_SIZE) {
    throw invalid(`A block is ${BLOCK_SIZE} bytes; this one is ${data.length} (x-amz-Data-Length ${headers.dataLength}).`, "INVALID_BLOCK");
  }
  const checksum = createHash("sha256").update(data).digest("base64");
  if (checksum !== headers.checksum) throw invalid("The block's data does not match its x-amz-Checksum.", "INVALID_BLOCK");
  const chunk = await ctx.chunks.put(data);
  await putBlock(ctx.meta.db, snapshot.snapshot_id, index, chunk);
  return { checksum };
}

export interface CompleteHeaders {
  changedBlocksCount?: string;
  checksum?: string;
  checksumAlgorithm?: string;
  checksumAggregationMethod?: string;
}

export async function completeSnapshot(ctx: EbsContext, snapshotId: string, headers: CompleteHeaders): Promise<CompleteSnapshotResponse> {
  const snapshot = await snapshotOf(ctx, snapshotId);
  if (snapshot.state === "completed") return { Status: "completed" };
  if (snapshot.state !== "pending") throw new ApiError("ConflictException", `The snapshot '${snapshotId}' is ${snapshot.state}.`);
  const count = Number(headers.changedBlocksCount);
  if (headers.changedBlocksCount === undefined || !Number.isInteger(count) || count < 0) {
    throw invalid("CompleteSnapshot requires x-amz-ChangedBlocksCount, a whole number.");
  }
  // LINEAR: the SHA-256 of every written block's SHA-256, in block order.
  const aggregate = createHash("sha256");
  let written = 0;
  for await (const block of writtenBlocks(ctx.meta.db, snapshot.snapshot_id)) {
    written++;
    aggregate.update(Buffer.from(block.chunk === ZERO_CHUNK ? ZERO_BLOCK_SHA256 : block.chunk, "hex"));
  }
  if (count !== written) throw invalid(`x-amz-ChangedBlocksCount is ${count}, but ${written} blocks were written to the snapshot.`);
  if (headers.checksum !== undefined) {
    if (headers.checksumAlgorithm !== "SHA256" || headers.checksumAggregationMethod !== "LINEAR") {
      throw invalid("A snapshot checksum must be SHA256 aggregated LINEAR.");
    }
    if (aggregate.digest("base64") !== headers.checksum) throw invalid("The snapshot's x-amz-Checksum does not match the blocks written.");
  }
  await setSnapshotState(ctx.meta.db, snapshot.snapshot_id, "completed", "100%");
  return { Status: "completed" };
}

export interface ListQuery {
  maxResults?: string;
  pageToken?: string;
  startingBlockIndex?: string;
}

function page(snapshot: SnapshotRow, query: ListQuery): { from: number; limit: number } {
  const limit = query.maxResults === undefined ? 10000 : Number(query.maxResults);
  if (!Number.isInteger(limit) || limit < 100 || limit > 10000) throw invalid("maxResults must be from 100 to 10000.");
  let from = query.startingBlockIndex === undefined ? 0 : blockIndexOf(snapshot, query.startingBlockIndex);
  if (query.pageToken !== undefined) {
    const decoded = /^[0-9]{1,10}$/.test(Buffer.from(query.pageToken, "base64url").toString())
      ? Number(Buffer.from(query.pageToken, "base64url").toString())
      : NaN;
    if (!Number.isInteger(decoded)) throw invalid("The page token is not valid.", "INVALID_PAGE_TOKEN");
    from = Math.max(from, decoded);
  }
  return { from, limit };
}

const nextPageToken = (index: number) => Buffer.from(String(index)).toString("base64url");

function requireCompleted(snapshot: SnapshotRow) {
  if (snapshot.state !== "completed")
    throw invalid(`The snapshot '${snapshot.snapshot_id}' is ${snapshot.state}; it can be read once completed.`, "INVALID_SNAPSHOT_ID");
}

export async function listSnapshotBlocks(ctx: EbsContext, snapshotId: string, query: ListQuery): Promise<ListSnapshotBlocksResponse> {
  const snapshot = await snapshotOf(ctx, snapshotId);
  requireCompleted(snapshot);
  const { from, limit } = page(snapshot, query);
  const rows = await listBlocks(ctx.meta.db, snapshot.snapshot_id, { from, limit: limit + 1, nonZero: true });
  const more = rows.length > limit;
  const blocks: Block[] = rows.slice(0, limit).map((row) => ({ BlockIndex: row.block_index, BlockToken: blockToken(row.chunk) }));
  return {
    Blocks: blocks,
    ExpiryTime: new Date(Date.now() + TOKEN_LIFETIME_SECONDS * 1000),
    VolumeSize: snapshot.volume_size,
    BlockSize: BLOCK_SIZE,
    NextToken: more ? nextPageToken(rows[limit]!.block_index) : undefined,
  };
}

export async function listChangedBlocks(
  ctx: EbsContext,
  secondSnapshotId: string,
  query: ListQuery & { firstSnapshotId?: string },
): Promise<ListChangedBlocksResponse> {
  const second = await snapshotOf(ctx, secondSnapshotId);
  requireCompleted(second);
  const first = query.firstSnapshotId ? await snapshotOf(ctx, query.firstSnapshotId) : undefined;
  if (first) requireCompleted(first);
  const { from, limit } = page(second, query);
  // Walk both manifests in block order, a page at a time; a block counts as changed where their chunks differ.
  const secondRows = blockRows(ctx.meta.db, second.snapshot_id, { from });
  const firstRows = first ? blockRows(ctx.meta.db, first.snapshot_id, { from }) : undefined;
  const changed: ChangedBlock[] = [];
  let nextToken: string | undefined;
  const next = async (rows: AsyncGenerator<BlockRow> | undefined) => (rows ? ((await rows.next()).value ?? undefined) : undefined);
  let inSecond = await next(secondRows);
  let inFirst = await next(firstRows);
  while (inSecond || inFirst) {
    const index = Math.min(inSecond?.block_index ?? Infinity, inFirst?.block_index ?? Infinity);
    const secondChunk = inSecond?.block_index === index ? inSecond.chunk : ZERO_CHUNK;
    const firstChunk = inFirst?.block_index === index ? inFirst.chunk : ZERO_CHUNK;
    if (inSecond?.block_index === index) inSecond = await next(secondRows);
    if (inFirst?.block_index === index) inFirst = await next(firstRows);
    await yieldToLoop();
    if (secondChunk === firstChunk) continue;
    if (changed.length === limit) {
      nextToken = nextPageToken(index);
      break;
    }
    changed.push({
      BlockIndex: index,
      FirstBlockToken: firstChunk === ZERO_CHUNK ? undefined : blockToken(firstChunk),
      SecondBlockToken: secondChunk === ZERO_CHUNK ? undefined : blockToken(secondChunk),
    });
  }
  return {
    ChangedBlocks: changed,
    ExpiryTime: new Date(Date.now() + TOKEN_LIFETIME_SECONDS * 1000),
    VolumeSize: second.volume_size,
    BlockSize: BLOCK_SIZE,
    NextToken: nextToken,
  };
}

export async function getSnapshotBlock(
  ctx: EbsContext,
  snapshotId: string,
  indexText: string,
  token: string | undefined,
): Promise<{ data: Buffer; checksum: string }> {
  const snapshot = await snapshotOf(ctx, snapshotId);
  requireCompleted(snapshot);
  const index = blockIndexOf(snapshot, indexText);
  if (!token) throw invalid("GetSnapshotBlock requires a blockToken.", "INVALID_BLOCK_TOKEN");
  const row = await getBlock(ctx.meta.db, snapshot.snapshot_id, index);
  if (!row || row.chunk === ZERO_CHUNK || blockToken(row.chunk) !== token) {
    throw invalid(`The block token is not valid for block ${index} of '${snapshotId}'.`, "INVALID_BLOCK_TOKEN");
  }
  const data = await ctx.chunks.get(row.chunk);
  return { data, checksum: createHash("sha256").update(data).digest("base64") };
}
