// The status sets, from their one home on the server (clients/models.py, rounds/models.py, the
// run moves of rounds/lifecycle.py), embedded in the page by dashboard/views.py: no module here
// lists statuses of its own.
const sets = JSON.parse(document.getElementById("status-sets").textContent);

// Clients that never come back: their token no longer authenticates.
export const GONE = new Set(sets.client.gone);
// Statuses that take a client out of the round it was selected for (the server drops it too).
export const DROPPING = new Set(sets.client.dropping);
// Clients a round may choose.
export const SELECTABLE = new Set(sets.client.selectable);
// Runs that are over: their configuration is final.
export const TERMINAL_RUN = new Set(sets.run.terminal);
// Run control -> the run statuses it may be used from.
export const RUN_CONTROLS = Object.fromEntries(
  Object.entries(sets.run.controls).map(([action, from]) => [action, new Set(from)]),
);
