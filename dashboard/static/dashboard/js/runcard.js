// The run's summary: status, round and phase, updates in, deadline, configuration in force and
// any pending change, and which run controls apply.
import { el } from "./dom.js";
import { seconds, setText } from "./format.js";
import { phase } from "./state.js";
import { GONE, RUN_CONTROLS } from "./statuses.js";

// The configuration shown at a glance, in the order an operator reads it.
const SUMMARY_FIELDS = [
  ["rounds", "rounds"], ["clients_per_round", "clients/round"], ["min_clients", "min clients"],
  ["min_updates", "min updates"], ["local_epochs", "epochs"], ["batch_size", "batch"],
  ["learning_rate", "lr"], ["momentum", "momentum"], ["weight_decay", "weight decay"],
  ["round_timeout", "deadline s"], ["offline_after", "offline after s"], ["upload_encoding", "uploads"],
  ["download_encoding", "downloads"], ["allow_backfill", "backfill"], ["strategy_config", "strategy"],
];

// "cnn on fashion-mnist" for the built-in task; the task's path and settings otherwise.
function describeTask(run) {
  const config = run.task_config || {};
  if (run.task === "fedcore.tasks.vision:image_classification") return `${config.arch} on ${config.dataset}`;
  const settings = Object.entries(config).map(([k, v]) => `${k}=${v}`).join(", ");
  return settings ? `${run.task} (${settings})` : run.task;
}

function show(value) {
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (value && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => `${k}=${v}`).join(" ") || "defaults";
  }
  return value == null ? "–" : String(value);
}

export function renderRun(store) {
  const run = store.run;
  setText(document.getElementById("run-name"), run.name);
  const badge = document.getElementById("run-status");
  setText(badge, run.status);
  badge.className = `badge s-${run.status}`;
  setText(document.getElementById("run-model"), `${describeTask(run)} · ${run.strategy}`);
  for (const button of document.querySelectorAll("[data-run-action]")) {
    button.disabled = !RUN_CONTROLS[button.dataset.runAction].has(run.status);
  }
  const open = store.openRound();
  const current = open ? open.number : run.completed_rounds;
  setText(document.getElementById("run-round"), `${current} of ${run.rounds} (${run.completed_rounds} done)`);
  setText(document.getElementById("run-phase"), phase(store));
  const shown = open || store.rounds[store.rounds.length - 1];
  const expected = shown ? shown.expected.length : 0;
  const received = shown ? shown.received.length : 0;
  setText(document.getElementById("run-updates"), shown ? `${received} of ${expected} (round ${shown.number})` : "–");
  const meter = document.getElementById("run-updates-meter");
  meter.max = Math.max(1, expected);
  meter.value = received;
  setText(document.getElementById("run-version"), run.current_version == null ? "–" : `v${run.current_version}`);
  let clients = 0;
  for (const c of store.clients.values()) if (!GONE.has(c.status)) clients++;
  setText(document.getElementById("run-clients"), `${clients} connected, ${store.readyClients()} ready`);
  renderDeadline(store);
  renderConfigSummary(store);
}

export function renderDeadline(store) {
  const open = store.openRound();
  const node = document.getElementById("run-deadline");
  if (!open || !open.deadline) return setText(node, "–");
  const left = (Date.parse(open.deadline) - store.now()) / 1000;
  setText(node, left > 0 ? seconds(left) : "passed");
  node.classList.toggle("late", left <= 0);
}

function renderConfigSummary(store) {
  const box = document.getElementById("config-summary");
  const cfg = store.config;
  if (!cfg) return box.replaceChildren();
  const inForce = cfg.in_force_values || cfg.values || {};
  const items = SUMMARY_FIELDS.filter(([key]) => key in inForce).map(([key, label]) =>
    el("span", { class: "chip", title: key }, el("b", { text: `${label} ` }), show(inForce[key])));
  const head = el("p", { id: "config-in-force" },
    el("strong", { text: `config v${show(cfg.in_force)} in force` }), " ", ...items);
  const pending = Object.entries(cfg.pending || {});
  const children = [head];
  if (pending.length) {
    const open = store.openRound();
    const next = (open ? open.number : store.run.completed_rounds) + 1;
    children.push(el("p", { id: "config-pending", class: "pending" },
      el("strong", { text: `v${cfg.version} pending, applies from round ${next}: ` }),
      pending.map(([key, [from, to]]) => `${key} ${show(from)} → ${show(to)}`).join(", ")));
  }
  box.replaceChildren(...children);
}
