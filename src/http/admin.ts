// Kiln's own routes under /_kiln/: health and liveness for probes, reset for test suites, and what a guest
// would do from inside (an instance's own shutdown, and its metadata service, as the guest sees
// it at 169.254.169.254, under /_kiln/instances/<id>/metadata/). Health and liveness are open to anyone. The
// other routes take a request signed as EC2 requests are (reset and collect: any account; an
// instance's routes: its owner), or the operator's X-Kiln-Admin-Token, and never a request a
// web page sent.
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { SignatureVerifier } from "../auth/sigv4.js";
import type { KilnConfig } from "../config.js";
import { ApiError } from "../protocol/errors.js";
import type { DataHome } from "../store/data-home.js";
import type { TaskRunner } from "../tasks/runner.js";
import type { InstanceBackend } from "../vm/backend.js";
import type { InstanceMetadata, MetadataService } from "../vm/metadata-service.js";
import type { Catalogue } from "../store/meta/catalogue.js";
import type { MetaStore } from "../store/meta/database.js";
import { GUEST_SHUTDOWN, instanceById } from "../store/meta/instances.js";
import type { Scope } from "../store/meta/tags.js";
import { readBody } from "./body.js";
import { fromWebPage, isFormContentType } from "./browser.js";
import { callerOf, requestToVerify } from "./caller.js";
import type { ParsedUrl } from "./url.js";

export interface AdminAnswer {
  status: number;
  body: string;
  /** Headers, content-type among them (else application/json). */
  headers?: Record<string, string>;
}

const json = (status: number, value: unknown): AdminAnswer => ({ status, body: JSON.stringify(value) });
const refused = (status: number, error: string, message: string) => json(status, { error, message });

export const ADMIN_TOKEN_HEADER = "x-kiln-admin-token";

/** Health and liveness are read: GET or HEAD, anything else this answer. */
const isRead = (req: IncomingMessage) => req.method === "GET" || req.method === "HEAD";
const READ_ONLY = json(405, { error: "MethodNotAllowed", message: "Use GET." });

/** Who may use a route that changes state: the operator (by token), or a signed account. */
type AdminCaller = { operator: true } | { operator: false; scope: Scope };

const sameSecret = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

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

export function adminRoutes(deps: {
  config: KilnConfig;
  verifier: SignatureVerifier;
  meta: MetaStore;
  data: DataHome;
  tasks: TaskRunner;
  machines: InstanceBackend;
  catalogue: Catalogue;
  version: string;
  apiVersion: string;
  metadata: MetadataService;
  loadMetadata: (instanceId: string) => Promise<InstanceMetadata | undefined>;
}) {
  /** The caller of a state-changing route, or the answer that refuses it. */
  async function callerOfAdmin(req: IncomingMessage, url: ParsedUrl): Promise<AdminCaller | AdminAnswer> {
    const page = fromWebPage(req);
    if (page) return refused(403, "Forbidden", `Kiln's own routes do not answer web pages: ${page}.`);
    if (isFormContentType(req))
      return refused(403, "Forbidden", "Kiln's own routes do not take a body an HTML form can send; send no Content-Type or application/json.");
    const token = req.headers[ADMIN_TOKEN_HEADER];
    if (token !== undefined) {
      const expected = deps.config.adminToken;
      if (expected !== undefined && typeof token === "string" && sameSecret(token, expected)) return { operator: true };
      return refused(
        403,
        "Forbidden",
        expected === undefined ? "This Kiln has no admin token (KILN_ADMIN_TOKEN): sign the request instead." : "The admin token is not this Kiln's.",
      );
    }
    try {
      const body = await readBody(req, deps.config.limits.maxBodyBytes);
      const caller = await callerOf(deps, requestToVerify(req, url, body), "ec2");
      return { operator: false, scope: { accountId: caller.accountId, region: caller.region } };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      return refused(error.status, error.code, error.message);
    }
  }

  return async (req: IncomingMessage, url: ParsedUrl): Promise<AdminAnswer> => {
    const path = url.path;
    if (path === "/_kiln/live") {
      // Liveness: the server itself turns, whatever its stores do (health says that), so a probe
      // that restarts processes does not restart one whose database is away.
      if (!isRead(req)) return READ_ONLY;
      return json(200, { status: "running", version: deps.version });
    }
    if (path === "/_kiln/health") {
      if (!isRead(req)) return READ_ONLY;
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
        instances: deps.machines.info(),
        dependencies,
      });
    }
    const metadata = /^\/_kiln\/instances\/(i-[0-9a-f]+)\/metadata(\/.*)?$/.exec(path);
    if (metadata) {
      const caller = await callerOfAdmin(req, url);
      if (!("operator" in caller)) return caller;
      const instanceId = metadata[1]!;
      const record = await instanceById(deps.meta.db, instanceId);
      const owner = caller.operator ? undefined : caller.scope;
      if (!record || (owner && (record.row.account_id !== owner.accountId || record.row.region !== owner.region))) {
        return refused(404, "InvalidInstanceID.NotFound", `The instance ID '${instanceId}' does not exist`);
      }
      const request = { method: req.method ?? "GET", path: metadata[2] ?? "/", headers: req.headers };
      const answered = await deps.metadata.answer(instanceId, request, () => deps.loadMetadata(instanceId));
      return { status: answered.status, body: answered.body, headers: answered.headers };
    }
    const shutdown = /^\/_kiln\/instances\/(i-[0-9a-f]+)\/shutdown$/.exec(path);
    if (path !== "/_kiln/reset" && path !== "/_kiln/collect" && !shutdown) return json(404, { error: "NotFound", message: `No Kiln route ${path}.` });
    if (req.method !== "POST") return json(405, { error: "MethodNotAllowed", message: "Use POST." });
    if (path === "/_kiln/reset" && !deps.config.allowReset) return refused(403, "Forbidden", "This Kiln was started with resets disabled.");
    const caller = await callerOfAdmin(req, url);
    if (!("operator" in caller)) return caller;
    if (shutdown) {
      const instanceId = shutdown[1]!;
      const record = await instanceById(deps.meta.db, instanceId);
      const owner = caller.operator ? undefined : caller.scope;
      if (!record || (owner && (record.row.account_id !== owner.accountId || record.row.region !== owner.region))) {
        return refused(404, "InvalidInstanceID.NotFound", `The instance ID '${instanceId}' does not exist`);
      }
      if (record.state !== "running") return refused(409, "IncorrectInstanceState", `Instance ${instanceId} is not running.`);
      // As the guest's own power-off: a guest that runs is asked through its power button (its OS
      // shuts down), and it ends stopped or terminated as InstanceInitiatedShutdownBehavior says.
      const scope = { accountId: record.row.account_id, region: record.row.region };
      const terminates = record.row.shutdown_behavior === "terminate";
      if (terminates) await deps.machines.terminate(scope, [record], GUEST_SHUTDOWN);
      else await deps.machines.stop([record], GUEST_SHUTDOWN, false);
      return json(200, { instanceId, becomes: terminates ? "terminated" : "stopped" });
    }
    if (path === "/_kiln/reset") {
      // Tasks under way finish first: a reset leaves nothing writing into the emptied store.
      await deps.tasks.idle();
      await deps.machines.forgetAll();
      await deps.meta.reset();
      await deps.data.chunks.reset();
      await deps.data.blobs.reset();
      deps.catalogue.forget();
      await deps.catalogue.ensure(deps.config.defaultRegion);
      return json(200, { reset: true });
    }
    // /_kiln/collect. ?graceMs=N overrides the configured grace (0 for test suites that are not writing meanwhile).
    const grace = url.pairs.find(([name]) => name === "graceMs")?.[1];
    const graceMs = grace === undefined ? deps.config.collect.graceMs : Number(grace);
    if (!Number.isInteger(graceMs) || graceMs < 0)
      return json(400, { error: "InvalidParameterValue", message: "graceMs must be a whole number of milliseconds." });
    return json(200, await deps.data.chunks.collect(graceMs));
  };
}
