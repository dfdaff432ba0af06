// Kiln's own routes under /_kiln/: health for probes, reset for test suites, and what a guest
// would do from inside (an instance's own shutdown).
import type { IncomingMessage } from "node:http";
import type { KilnConfig } from "../config.js";
import type { DataHome } from "../store/data-home.js";
import type { TaskRunner } from "../tasks/runner.js";
import type { Catalogue } from "../store/meta/catalogue.js";
import type { MetaStore } from "../store/meta/database.js";
import { shutdownFromInside } from "../store/meta/instances.js";

export interface AdminAnswer {
  status: number;
  body: string;
}

const json = (status: number, value: unknown): AdminAnswer => ({ status, body: JSON.stringify(value) });

/** Whether a dependency answers, within a few seconds. */
async function probe(check: () => Promise<unknown>): Promise<{ status: "available" | "unavailable"; error?: string }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("no answer within 3 s")), 3000);
  });
  try {
    await Promise.race([check(), timeout]);
    return { status: "available" };
  } catch (error) {
    return { status: "unavailable", error: (error as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

export function adminRoutes(deps: { config: KilnConfig; meta: MetaStore; data: DataHome; tasks: TaskRunner; catalogue: Catalogue; version: string; apiVersion: string }) {
  return async (req: IncomingMessage, path: string): Promise<AdminAnswer> => {
    if (path === "/_kiln/health") {
      if (req.method !== "GET" && req.method !== "HEAD") return json(405, { error: "MethodNotAllowed", message: "Use GET." });
      // Asked together: an answer waits for the slower, not for both in turn.
      const [metadata, data] = await Promise.all([probe(() => deps.meta.ping()), probe(() => deps.data.ping())]);
      const dependencies = { metadata, data };
      const healthy = dependencies.metadata.status === "available" && dependencies.data.status === "available";
      return json(healthy ? 200 : 503, {
        status: healthy ? "running" : "unavailable",
        version: deps.version,
        ec2ApiVersion: deps.apiVersion,
        services: { ec2: "running", ebs: "running", s3: "running" },
        store: { metadata: deps.meta.dialect, dataDir: deps.config.dataDir, data: deps.data.describe },
        dependencies,
      });
    }
    if (path === "/_kiln/reset") {
      if (req.method !== "POST") return json(405, { error: "MethodNotAllowed", message: "Use POST." });
      if (!deps.config.allowReset) return json(403, { error: "Forbidden", message: "This Kiln was started with resets disabled." });
      // Tasks under way finish first: a reset leaves nothing writing into the emptied store.
      await deps.tasks.idle();
      await deps.meta.reset();
      await deps.data.chunks.reset();
      await deps.data.blobs.reset();
      deps.catalogue.forget();
      await deps.catalogue.ensure(deps.config.defaultRegion);
      return json(200, { reset: true });
    }
    if (path === "/_kiln/collect") {
      if (req.method !== "POST") return json(405, { error: "MethodNotAllowed", message: "Use POST." });
      // ?graceMs=N overrides the configured grace (0 for test suites that are not writing meanwhile).
      const grace = new URL(req.url ?? "/", "http://kiln").searchParams.get("graceMs");
      const graceMs = grace === null ? deps.config.collect.graceMs : Number(grace);
      if (!Number.isInteger(graceMs) || graceMs < 0) return json(400, { error: "InvalidParameterValue", message: "graceMs must be a whole number of milliseconds." });
      return json(200, await deps.data.chunks.collect(graceMs));
    }
    const shutdown = /^\/_kiln\/instances\/(i-[0-9a-f]+)\/shutdown$/.exec(path);
    if (shutdown) {
      if (req.method !== "POST") return json(405, { error: "MethodNotAllowed", message: "Use POST." });
      const outcome = await shutdownFromInside(deps.meta.db, shutdown[1]!, deps.config.stateDelayMs);
      return outcome ? json(200, { instanceId: shutdown[1], becomes: outcome }) : json(409, { error: "IncorrectInstanceState", message: `Instance ${shutdown[1]} is not running.` });
    }
    return json(404, { error: "NotFound", message: `No Kiln route ${path}.` });
  };
}
