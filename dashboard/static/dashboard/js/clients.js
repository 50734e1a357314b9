// The clients table: one keyed row per client, updated cell by cell.
import { el, syncRows, toggleClass } from "./dom.js";
import { ago, bytes, pct, setText } from "./format.js";
import { GONE } from "./statuses.js";

// The state names are the protocol's; these say what each means (shown on hover).
const MEANING = {
  join: "registered, not yet given work", ready: "waiting to be selected", training: "selected: downloading and training",
  finish: "update sent for the round", update: "fetching the global model", paused: "paused by an operator: not selected",
  offline: "silent for too long", left: "said goodbye", kicked: "removed by an operator; token revoked",
};
// Which per-row actions make sense in which state (the server refuses the rest anyway).
const PENDING = (c) => c.admission === "pending" && !GONE.has(c.status);
const ACTIONS = [
  ["approve", PENDING],
  ["reject", PENDING],
  ["pause", (c) => !GONE.has(c.status) && c.status !== "paused" && !PENDING(c)],
  ["resume", (c) => c.status === "paused"],
  ["kick", (c) => !GONE.has(c.status) && !PENDING(c)],
  ["ban", (c) => !GONE.has(c.status) && Boolean(c.registered_from)],
];
const DANGER = new Set(["kick", "reject", "ban"]);

function makeRow(client) {
  const row = el("tr", { dataset: { client: String(client.id) } });
  for (const name of ["name", "state", "round", "progress", "examples", "model", "seen", "sent", "received"]) {
    row.append(el("td", { class: `c-${name}` }));
  }
  row.querySelector(".c-state").append(el("span", { class: "status" }));
  row.querySelector(".c-progress").append(el("meter", { min: "0", max: "1", value: "0" }), el("span", { class: "pct" }));
  const actions = el("td", { class: "c-actions" });
  for (const [action] of ACTIONS) {
    actions.append(el("button", {
      type: "button", class: DANGER.has(action) ? "danger small" : "small",
      dataset: { clientAction: action, client: String(client.id) }, text: action,
    }));
  }
  row.append(actions);
  return row;
}

function updateRow(row, client, nowMs) {
  const cell = (name) => row.querySelector(`.c-${name}`);
  setText(cell("name"), `${client.name} #${client.id}`);
  const status = cell("state").firstChild;
  // Waiting for an operator's approval: no round selects it until then.
  setText(status, PENDING(client) ? `${client.status} · awaiting approval` : client.status);
  if (status.dataset.status !== client.status) {
    status.dataset.status = client.status;
    status.className = `status s-${client.status}`;
    status.title = MEANING[client.status] || "";
  }
  setText(cell("round"), client.round == null ? "" : String(client.round));
  const training = client.status === "training";
  const meter = cell("progress").firstChild;
  meter.hidden = !training;
  meter.value = training ? client.progress || 0 : 0;
  setText(cell("progress").lastChild, training ? pct(client.progress || 0) : "");
  setText(cell("examples"), String(client.num_examples ?? ""));
  setText(cell("model"), client.held_version == null ? "" : `v${client.held_version}`);
  setText(cell("seen"), ago(client.last_seen, nowMs));
  setText(cell("sent"), bytes(client.bytes_sent));
  setText(cell("received"), bytes(client.bytes_received));
  for (const [action, allowed] of ACTIONS) {
    const button = row.querySelector(`[data-client-action="${action}"]`);
    const disabled = !allowed(client);
    if (button.disabled !== disabled) button.disabled = disabled;
  }
  toggleClass(row, "gone", GONE.has(client.status));
}

export function renderClients(store) {
  const tbody = document.querySelector("#clients tbody");
  const clients = [...store.clients.values()].sort((a, b) => a.id - b.id);
  const now = store.now();
  syncRows(tbody, clients, (c) => c.id, makeRow, (row, c) => updateRow(row, c, now));
  document.getElementById("clients-empty").hidden = clients.length > 0;
}
