// Instance states as EC2 numbers and words them, and the schedules that move an instance.
import type { Schedule } from "../../domain/transitions.js";
import { setSchedule, type InstanceState } from "../../store/meta/instances.js";
import type { ActionContext } from "./action.js";

export const STATE_CODES: Record<InstanceState, number> = { pending: 0, running: 16, "shutting-down": 32, terminated: 48, stopping: 64, stopped: 80 };

export const stateOf = (state: InstanceState) => ({ Code: STATE_CODES[state], Name: state });

/** EC2's StateTransitionReason for a change the user asked for. */
export const userInitiated = (now = new Date()) => `User initiated (${now.toISOString().replace("T", " ").slice(0, 19)} GMT)`;

/** Moves an instance onto a schedule of its own (CreateImage's stop and start). */
export async function scheduleInstance(ctx: ActionContext, instanceId: string, steps: Schedule<InstanceState>): Promise<void> {
  await setSchedule(ctx.meta.db, instanceId, steps, userInitiated());
}
