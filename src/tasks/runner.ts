// Runs durable tasks: each is a row written before its work starts, so a stopped Kiln finds the
// ones it left running when it starts again and runs them anew (each kind undoes its own half-made
// output first). A task that fails says why in its row; one still running is never lost.
import type { Logger } from "../log.js";
import type { MetaDb } from "../store/meta/database.js";
import { endTask, runningTasks, setTaskProgress, type TaskRow } from "../store/meta/tasks.js";

/** A failure the task's owner should read (a bad object, a missing snapshot), not a Kiln fault. */
export class TaskFailure extends Error {
  constructor(message: string, readonly code = "Client.Error") {
    super(message);
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
  private readonly active = new Set<Promise<void>>();
  private readonly cancels = new Map<string, AbortController>();

  constructor(
    private readonly db: MetaDb,
    private readonly kinds: Readonly<Record<string, TaskKind>>,
    private readonly logger: Logger,
  ) {}

  /** Runs again every task a stopped Kiln left running. */
  async resume(): Promise<void> {
    for (const task of await runningTasks(this.db)) {
      this.logger.info({ task: task.task_id, kind: task.kind }, "resuming task");
      const kind = this.kinds[task.kind];
      if (kind?.undo) await kind.undo(task);
      this.start(task);
    }
  }

  /** Starts a task whose row is written. */
  start(task: TaskRow): void {
    const running = this.execute(task).finally(() => this.active.delete(running));
    this.active.add(running);
  }

  /** Cancels a running task: it stops where it is, undoes its output and fails with `message`. False when it is not running here. */
  cancel(taskId: string, message: string): boolean {
    const own = this.cancels.get(taskId);
    if (!own) return false;
    own.abort(new TaskCancelled(message));
    return true;
  }

  /** Resolves once no task is running (tests, and a clean stop). */
  async idle(): Promise<void> {
    while (this.active.size) await Promise.allSettled([...this.active]);
  }

  /** Stops every task where it is; their rows stay running for the next start. */
  async stop(): Promise<void> {
    this.controller.abort();
    await this.idle();
  }

  private async execute(task: TaskRow): Promise<void> {
    const kind = this.kinds[task.kind];
    const own = new AbortController();
    this.cancels.set(task.task_id, own);
    const stopping = this.controller.signal;
    const signal = AbortSignal.any([stopping, own.signal]);
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
        setTaskProgress(this.db, task.task_id, whole).catch((error: unknown) => this.logger.warn({ err: error, task: task.task_id }, "progress not written"));
      },
    };
    try {
      if (!kind) throw new TaskFailure(`Kiln has no task kind ${task.kind}.`, "Server.InternalError");
      await kind.run(task, io);
      if (stopping.aborted) return;
      own.signal.throwIfAborted();
      await endTask(this.db, task.task_id, { state: "completed" });
    } catch (caught) {
      if (stopping.aborted) return; // stopped, not failed: it runs again at the next start
      const error: unknown = own.signal.aborted ? own.signal.reason : caught;
      const failure = error instanceof TaskFailure ? error : new TaskFailure("Kiln met an internal error while running the task.", "Server.InternalError");
      if (!(error instanceof TaskFailure)) this.logger.error({ err: error, task: task.task_id }, "task failed");
      try {
        await kind?.undo?.(task);
        await kind?.failed?.(task, failure);
      } finally {
        await endTask(this.db, task.task_id, { state: "failed", failure: failure.message });
      }
    } finally {
      this.cancels.delete(task.task_id);
    }
  }
}
