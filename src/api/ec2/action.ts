// What an EC2 action is to the dispatcher: a function of the caller and the decoded input.
import type { KilnConfig } from "../../config.js";
import type { MetaStore } from "../../store/meta/database.js";
import type { BlobStore } from "../../store/objects/blobs.js";
import type { TaskRunner } from "../../tasks/runner.js";
import type { InvalidParameter } from "../../protocol/errors.js";

export interface ActionContext {
  readonly requestId: string;
  readonly accountId: string;
  readonly region: string;
  readonly meta: MetaStore;
  readonly config: KilnConfig;
  /** Bucket object bytes (what store and restore tasks write and read). */
  readonly blobs: BlobStore;
  readonly tasks: TaskRunner;
}

export interface Action<Input = any, Output = any, Checked = any> {
  /**
   * Checks that must pass even when DryRun is set (DryRun then answers DryRunOperation). What it
   * returns (a validated plan, say) is handed to `run`, so the work is not done twice.
   */
  check?(ctx: ActionContext, input: Input): Promise<Checked> | Checked;
  run(ctx: ActionContext, input: Input, checked: Checked): Promise<Output | void> | Output | void;
  /**
   * EC2's own error for a parameter the model's bounds refuse (e.g. a too-short AMI name), by
   * parameter name (a list parameter's name covers its items).
   */
  parameterErrors?: Record<string, (refused: InvalidParameter) => Error>;
}

export type ActionTable = Record<string, Action>;
