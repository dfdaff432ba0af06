// Assembles a running Kiln from its parts: model, metadata store, accounts, actions, HTTP server.
import { type ContextFor, loadInstanceMetadata } from "./api/ec2/instance-metadata.js";
import { MetadataService } from "./vm/metadata-service.js";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { ec2Actions } from "./api/ec2/index.js";
import { SignatureVerifier } from "./auth/sigv4.js";
import type { KilnConfig } from "./config.js";
import { adminRoutes } from "./http/admin.js";
import { ec2Endpoint } from "./http/ec2.js";
import { createHttpServer } from "./http/server.js";
import { createLogger, type Logger } from "./log.js";
import { ec2Model } from "./protocol/model.js";
import { openMetaStore, type MetaStore } from "./store/meta/database.js";
import { catalogue, checkRootDisks } from "./store/meta/catalogue.js";
import { ebsEndpoint } from "./http/ebs.js";
import { ssmEndpoint } from "./http/ssm.js";
import { s3Endpoint } from "./http/s3.js";
import { openDataHome, type DataHome } from "./store/data-home.js";
import { taskKinds } from "./tasks/kinds.js";
import { TaskRunner } from "./tasks/runner.js";
import { sweepBlobs } from "./store/objects/sweep.js";
import { join } from "node:path";
import { type InstanceBackend, openInstanceBackend } from "./vm/backend.js";

export const KILN_VERSION: string = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;

export interface RunningKiln {
  readonly url: string;
  readonly port: number;
  readonly config: KilnConfig;
  readonly logger: Logger;
  /** The metadata store, for tests and tools that look beneath the API. */
  readonly meta: MetaStore;
  close(): Promise<void>;
}

/**
 * The node's name in task leases, kept in the data directory so that a restarted node takes its
 * own tasks back at once rather than after their leases run out.
 */
function nodeIdOf(dataDir: string): string {
  const file = join(dataDir, "node-id");
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    const id = `node-${randomBytes(8).toString("hex")}`;
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, `${id}\n`, { flag: "wx" });
    return id;
  }
}

export async function startKiln(config: KilnConfig, logger: Logger = createLogger(config.logLevel)): Promise<RunningKiln> {
  const model = ec2Model();
  const actions = ec2Actions(model);
  await checkRootDisks(config.catalogue);
  const meta = await openMetaStore(config);
  const verifier = new SignatureVerifier(config.accounts);
  let data: DataHome;
  try {
    data = await openDataHome(config, meta.db, logger);
  } catch (error) {
    await meta.close();
    throw error;
  }
  const { chunks, blobs } = data;
  // Before serving: blobs written by requests a stop cut short are named by no row (those old
  // enough that no other node sharing the folder can still be about to name them).
  const publicImages = catalogue(meta.db, chunks, config.catalogue, logger);
  try {
    const swept = await sweepBlobs(meta.db, blobs, Date.now() - config.collect.graceMs);
    if (swept > 0) logger.info({ blobs: swept }, "removed object data no object names");
    // The default region's catalogue is there before the first request; others fill on first use.
    await publicImages.ensure(config.defaultRegion);
  } catch (error) {
    await chunks.close();
    await meta.close();
    throw error;
  }
  const nodeId = config.nodeId ?? nodeIdOf(config.dataDir);
  const tasks = new TaskRunner(meta.db, taskKinds({ db: meta.db, chunks, blobs }), logger, { nodeId, leaseMs: config.taskLeaseMs });
  await tasks.resume();
  // The instance metadata service: what a guest reads at 169.254.169.254, in the owner's context.
  const metadata = new MetadataService();
  // The actions' context of an instance's owner, for what its metadata says (as DescribeInstances
  // says it). Guests a resumed backend boots may ask before the backend is returned: `machines`
  // is read when a context is made, not now.
  let machines: InstanceBackend | undefined;
  const contextFor: ContextFor = ({ accountId, region }) => ({
    requestId: "metadata",
    accountId,
    region,
    meta,
    config,
    blobs,
    tasks,
    machines: machines!,
  });
  const loadMetadata = (instanceId: string) => loadInstanceMetadata({ db: meta.db, contextFor }, instanceId);
  machines = await openInstanceBackend(config, {
    db: meta.db,
    chunks,
    logger,
    nodeId,
    metadata: (instanceId, request) => metadata.answer(instanceId, request, () => loadMetadata(instanceId)),
  });
  const server = createHttpServer(
    {
      ec2: ec2Endpoint({ config, model, actions, verifier, meta, catalogue: publicImages, blobs, tasks, machines }),
      ebs: ebsEndpoint({ config, verifier, meta, chunks }),
      s3: s3Endpoint({ config, verifier, meta, blobs }),
      ssm: ssmEndpoint({ config, verifier, meta }),
      admin: adminRoutes({
        config,
        verifier,
        meta,
        data,
        tasks,
        machines,
        catalogue: publicImages,
        version: KILN_VERSION,
        apiVersion: model.apiVersion,
        metadata,
        loadMetadata,
      }),
    },
    logger,
  );
  // Unreferenced chunks go on a timer that never keeps the process alive.
  const collector = setInterval(() => {
    chunks
      .collect(config.collect.graceMs)
      .then((result) => logger.info({ ...result }, "chunk collection"))
      .catch((error: unknown) => logger.error({ err: error }, "chunk collection failed"));
  }, config.collect.intervalMs);
  collector.unref();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  return {
    url: `http://${host}:${port}`,
    port,
    config,
    logger,
    meta,
    async close() {
      clearInterval(collector);
      await tasks.stop();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await machines.close();
      await chunks.close();
      await meta.close();
    },
  };
}
