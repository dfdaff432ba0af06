// Resource states that change with time (creating → available, pending → completed, …) are
// settled lazily: a row holds its state, the state it moves to and when. Readers see the later
// state once its time has come, so no timer runs and a restart loses nothing.
export interface Transitioning<State extends string> {
  state: State;
  next_state: State | null;
  next_state_at: string | null;
}

export function currentState<State extends string>(row: Transitioning<State>, now = Date.now()): State {
  return row.next_state !== null && row.next_state_at !== null && Date.parse(row.next_state_at) <= now ? row.next_state : row.state;
}

/** Columns for a row that is `state` now and becomes `next` after `delayMs` (at once for 0). */
export function transition<State extends string>(state: State, next: State, delayMs: number, now = Date.now()): Transitioning<State> {
  return { state, next_state: next, next_state_at: new Date(now + delayMs).toISOString() };
}

/**
 * A state schedule: the states a resource passes through and when each begins, in time order
 * (an instance stopping → stopped → pending → running for CreateImage, say).
 */
export type Schedule<State extends string> = [State, string][];

/** Each step begins `delayMs` after the one before; the first begins now. */
export function schedule<State extends string>(steps: readonly State[], delayMs: number, now = Date.now()): Schedule<State> {
  return steps.map((state, i) => [state, new Date(now + i * delayMs).toISOString()]);
}

export function scheduledState<State extends string>(steps: Schedule<State>, now = Date.now()): State {
  let current = steps[0]![0];
  for (const [state, from] of steps) if (Date.parse(from) <= now) current = state;
  return current;
}
