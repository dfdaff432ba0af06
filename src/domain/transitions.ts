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
