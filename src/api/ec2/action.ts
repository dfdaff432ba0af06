// What an EC2 action is to the dispatcher: a function of the caller and the decoded input.
import type { InstanceBackend } from "../../vm/backend.js";
import type * as Ec2 from "@aws-sdk/client-ec2";
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
  /** What runs instances: qemu guests, or none (vm/backend.ts). */
  readonly machines: InstanceBackend;
}

/**
 * An action's handlers. `check` and `run` are function-typed members (not methods), so a handler
 * written for another action's request type is a compile error, not a silent any.
 */
// biome-ignore lint/suspicious/noExplicitAny: the dispatcher holds every action in one map, whatever its shapes.
export interface Action<Input = any, Output = any, Checked = any> {
  /**
   * Checks that must pass even when DryRun is set (DryRun then answers DryRunOperation). What it
   * returns (a validated plan, say) is handed to `run`, so the work is not done twice.
   */
  check?: (ctx: ActionContext, input: Input) => Promise<Checked> | Checked;
  // biome-ignore lint/suspicious/noConfusingVoidType: an action with an empty result may return nothing.
  run: (ctx: ActionContext, input: Input, checked: Checked) => Promise<Output | void> | Output | void;
  /**
   * EC2's own error for a parameter the model's bounds refuse (e.g. a too-short AMI name), by
   * parameter name (a list parameter's name covers its items).
   */
  parameterErrors?: Record<string, (refused: InvalidParameter) => Error>;
}

// The request and result shapes of each action come from the EC2 model, through the client the
// model generates (its command classes carry both): Kiln writes none of them by hand.
type Ec2Client = typeof Ec2;
type CommandOf<Name extends string> = Ec2Client[`${Name}Command` & keyof Ec2Client];
type CommandInstance<Name extends string> = CommandOf<Name> extends abstract new (...args: never) => infer Command ? Command : never;

/** The EC2 actions of the model, by name (DescribeImages, ...). */
export type Ec2ActionName = { [Key in keyof Ec2Client]: Key extends `${infer Name}Command` ? Name : never }[keyof Ec2Client];
/** An action's request as the model defines it. */
export type Ec2Request<Name extends Ec2ActionName> = CommandInstance<Name> extends { input: infer Request } ? Request : never;
/** An action's result as the model defines it (without the client's response metadata). */
export type Ec2Result<Name extends Ec2ActionName> =
  CommandInstance<Name> extends { resolveMiddleware(...args: never): (...args: never) => Promise<{ output: infer Result }> }
    ? Omit<Result, "$metadata">
    : never;

/**
 * A family of EC2 actions: each entry's handlers take that action's request and answer its
 * result, so a handler reading a field its request lacks, or answering one its result lacks,
 * does not compile.
 */
export type ActionTable = { [Name in Ec2ActionName]?: Action<Ec2Request<Name>, Ec2Result<Name>> };
