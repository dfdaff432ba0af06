// Runs durable tasks: each is a row written before its work starts, so no task is lost with the
// node running it. Several nodes may share one database: a task runs on the node holding its
// lease, renewed while it runs. A node that stops (or dies) leaves its tasks running; when their
// leases run out, any node takes them over and runs them anew (each kind undoes its own
// half-made output first). A restarted node takes its own back at once. A task that fails says
// why in its row. A node that lost a task's lease stops it without a word: its output is the
// new owner's to make (kinds renew the lease inside their final transaction, so it cannot commit).
import type { Logger } from "../log.js";
import { isStoreUnavailable, type MetaDb } from "../store/meta/database.js";
import { cancelRequests, claimableTasks, claimTask, endTask, renewLease, requestCancel, setTaskProgress, type TaskRow } from "../store/meta/tasks.js";

/** A failure the task's owner should read (a bad object, a missing snapshot), not a Kiln fault. */
export class TaskFailure extends Error {
  constructor(
    message: string,
    readonly code = "Client.Error",
  ) {
    super(message);
  }
}

/** The reason a task's signal carries when another node has taken it over. */
export class TaskLost extends Error {
  constructor(taskId: string) {
    super(`task ${taskId} is now run by another node`);
  }
}

/** The reason a task's signal carries when its user cancelled it (CancelImportTask). */
export class TaskCancelled extends TaskFailure {
  constructor(message: string) {
    super(message, "Client.Cancelled");
  }
}

export interface TaskIo {
  /**
   * Aborted when Kiln stops (the task ends where it is and stays running, to run again at the
   * next start) or when the task is cancelled (it then fails with the TaskCancelled reason).
   */
  readonly signal: AbortSignal;
  /** Reports progress (0–100); written at most about once a second. */
  progress(percent: number): void;
  /**
   * Renews this node's lease inside `tx`, a task's final transaction: throws TaskLost (and so
   * rolls it back) when another node has taken the task over.
   */
  fence(tx: MetaDb): Promise<void>;
}

export interface RunnerOptions {
  /** This node's name in task leases: the same across its restarts, distinct from every other node's. */
  nodeId: string;
  /** How long a lease lasts unrenewed; renewed (and other nodes' lapsed ones looked for) every third of it. */
  leaseMs: number;
}

export interface TaskKind {
  /** Does the work; throws TaskFailure (or anything) to fail. */
  run(task: TaskRow, io: TaskIo): Promise<void>;
  /** Undoes a run's half-made output (before it runs again, and after it fails). */
  undo?(task: TaskRow): Promise<void>;
  /** Records a failure where the task's user will look (an image's state, say). */
  failed?(task: TaskRow, failure: TaskFailure): Promise<void>;
}

const PROGRESS_INTERVAL_MS = 1000;

export class TaskRunner {
  private readonly controller = new AbortController();
  private readonly active = new Map<string, Promise<void>>();
  /** Tasks this node is claiming or running: a task inserted here may also turn up among the claimable ones. */
  private readonly taken = new Set<string>();
  private readonly cancels = new Map<string, AbortController>();
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;

  constructor(
    private readonly db: MetaDb,
    private readonly kinds: Readonly<Record<string, TaskKind>>,
    private readonly logger: Logger,
    private readonly options: RunnerOptions,
  ) {}

  /** Takes every task this node may run now (its own from before a restart, and orphans), then keeps looking. */
  async resume(): Promise<void> {
    await this.takeOver();
    this.timer = setInterval(
      () => {
        this.beating ??= this.heartbeat().finally(() => (this.beating = undefined));
      },
      Math.max(50, Math.floor(this.options.leaseMs / 3)),
    );
    this.timer.unref();
  }

  /** Starts a task whose row is written, if no other node has taken it first. */
  async start(task: TaskRow): Promise<void> {
    if (this.taken.has(task.task_id)) return;
    this.taken.add(task.task_id);
    if (await this.claim(task.task_id)) this.run(task);
    else this.taken.delete(task.task_id);
  }

  /**
   * Cancels a task wherever it runs: it stops where it is, undoes its output and fails with
   * `message`. On another node, the owner sees the request at its next heartbeat.
   */
  async cancel(taskId: string, message: string): Promise<void> {
    const own = this.cancels.get(taskId);
    if (own) own.abort(new TaskCancelled(message));
    else await requestCancel(this.db, taskId, message);
  }

  /** Resolves once no task is running here (tests, and a clean stop). */
  async idle(): Promise<void> {
    while (this.active.size) await Promise.allSettled([...this.active.values()]);
  }

  /** Stops every task where it is; their rows stay running, for this node's next start or another node. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.controller.abort();
    await this.beating;
    await this.idle();
  }

  private claim(taskId: string): Promise<boolean> {
    const now = Date.now();
    return claimTask(this.db, taskId, this.options.nodeId, now, now + this.options.leaseMs);
  }

  private run(task: TaskRow): void {
    const running = this.execute(task).finally(() => {
      this.active.delete(task.task_id);
      this.taken.delete(task.task_id);
    });
    this.active.set(task.task_id, running);
  }

  /** Renews the leases of the tasks running here, hands on cancels and lost tasks, and takes lapsed ones. */
  private async heartbeat(): Promise<void> {
    try {
      const until = Date.now() + this.options.leaseMs;
      for (const row of await cancelRequests(this.db, [...this.active.keys()])) {
        const own = this.cancels.get(row.task_id);
        if (!own || own.signal.aborted) continue;
        // The renewal itself says whether this node still holds the task.
        if (!(await renewLease(this.db, row.task_id, this.options.nodeId, until))) {
          own.abort(new TaskLost(row.task_id));
        } else if (row.cancel_requested !== null) {
          own.abort(new TaskCancelled(row.cancel_requested));
        }
      }
      await this.takeOver();
    } catch (error) {
      this.logger.warn({ err: error }, "task heartbeat failed");
    }
  }

  private async takeOver(): Promise<void> {
    if (this.controller.signal.aborted) return;
    for (const task of await claimableTasks(this.db, this.options.nodeId, Date.now())) {
      if (this.taken.has(task.task_id)) continue;
      this.taken.add(task.task_id);
      try {
        if (!(await this.claim(task.task_id))) {
          this.taken.delete(task.task_id);
          continue;
        }
        this.logger.info({ task: task.task_id, kind: task.kind, from: task.owner }, "resuming task");
        await this.kinds[task.kind]?.undo?.(task);
      } catch (error) {
        // Claimed but not started: its lease runs out and it is taken again.
        this.taken.delete(task.task_id);
        throw error;
      }
      this.run(task);
    }
  }

  private async execute(task: TaskRow): Promise<void> {
    const kind = this.kinds[task.kind];
    const own = new AbortController();
    this.cancels.set(task.task_id, own);
    const stopping = this.controller.signal;
    const signal = AbortSignal.any([stopping, own.signal]);
    const node = this.options.nodeId;
    const lost = () => own.signal.reason instanceof TaskLost;
    let lastWrite = 0;
    let lastPercent = -1;
    const io: TaskIo = {
      signal,
      progress: (percent) => {
        const whole = Math.max(0, Math.min(99, Math.floor(percent)));
        const now = Date.now();
        if (whole === lastPercent || now - lastWrite < PROGRESS_INTERVAL_MS) return;
        lastWrite = now;
        lastPercent = whole;
        setTaskProgress(this.db, task.task_id, node, whole).catch((error: unknown) =>
          this.logger.warn({ err: error, task: task.task_id }, "progress not written"),
        );
      },
      fence: async (tx) => {
        if (!(await renewLease(tx, task.task_id, node, Date.now() + this.options.leaseMs))) {
          own.abort(new TaskLost(task.task_id));
          throw own.signal.reason;
        }
      },
    };
    try {
      if (!kind) throw new TaskFailure(`Kiln has no task kind ${task.kind}.`, "Server.InternalError");
      await kind.run(task, io);
      if (stopping.aborted || lost()) return;
      own.signal.throwIfAborted();
      await endTask(this.db, task.task_id, node, { state: "completed" });
    } catch (caught) {
      // Stopped, not failed: it runs again at this node's next start or on another node. Lost:
      // another node runs it now, and what it made is that node's.
      if (stopping.aborted || lost()) return;
      // A store out of reach is no fault of the task: it stays this node's, unrenewed, and the
      // next heartbeat takes it again (undoing what it made), until the store answers.
      if (!own.signal.aborted && isStoreUnavailable(caught)) {
        this.logger.warn({ err: caught, task: task.task_id }, "task paused: a store is unavailable; it runs again at the next heartbeat");
        return;
      }
      const error: unknown = own.signal.aborted ? own.signal.reason : caught;
      const failure = error instanceof TaskFailure ? error : new TaskFailure("Kiln met an internal error while running the task.", "Server.InternalError");
      if (!(error instanceof TaskFailure)) this.logger.error({ err: error, task: task.task_id }, "task failed");
      try {
        await kind?.undo?.(task);
        await kind?.failed?.(task, failure);
      } finally {
        await endTask(this.db, task.task_id, node, { state: "failed", failure: failure.message });
      }
    } finally {
      this.cancels.delete(task.task_id);
    }
  }
}
