// Buttons that act: run control, per-client actions and the new-run dialog. All go through the
// REST API; the page changes when the resulting event arrives, so every open dashboard (and
// this one) shows the same thing.
import { api } from "./api.js";
import { toast } from "./dom.js";
import { setText } from "./format.js";
import { readField } from "./config.js";

const CLIENT_CALLS = {
  pause: (id) => ["POST", `clients/${id}/pause/`],
  resume: (id) => ["POST", `clients/${id}/resume/`],
  kick: (id) => ["DELETE", `clients/${id}/`],
  approve: (id) => ["POST", `clients/${id}/approve/`],
  reject: (id) => ["POST", `clients/${id}/reject/`],
  ban: (id) => ["POST", `clients/${id}/ban/`],
};
const CONFIRM = {
  kick: (name) => `Kick ${name}? Its token is revoked (it may register again unless banned).`,
  reject: (name) => `Reject ${name}? Its token is revoked.`,
  ban: (name) => `Kick ${name} and ban the address it registered from? Devices behind the same address cannot register either.`,
};

async function act(button, call, after) {
  button.disabled = true;
  try {
    await call();
    after();
  } catch (err) {
    toast(err.describe ? err.describe() : err.message);
    button.disabled = false;
  }
}

export function initControls({ store, afterAction, showRun }) {
  for (const button of document.querySelectorAll("[data-run-action]")) {
    button.addEventListener("click", () => {
      const action = button.dataset.runAction;
      if (action === "stop" && !confirm(`Stop run "${store().run.name}"? A stopped run cannot be resumed.`)) return;
      act(button, () => api("POST", `runs/${store().run.id}/${action}/`), afterAction);
    });
  }

  document.getElementById("clients").addEventListener("click", (event) => {
    const button = event.target.closest("[data-client-action]");
    if (!button) return;
    const { clientAction: action, client: id } = button.dataset;
    const client = store().clients.get(Number(id));
    if (CONFIRM[action] && !confirm(CONFIRM[action](client ? client.name : id))) return;
    const [method, path] = CLIENT_CALLS[action](id);
    act(button, () => api(method, path), afterAction);
  });

  const dialog = document.getElementById("new-run");
  const form = document.getElementById("new-run-form");
  document.getElementById("new-run-open").addEventListener("click", () => dialog.showModal());
  document.getElementById("new-run-cancel").addEventListener("click", () => dialog.close());
  // Choosing a task fills its configuration's defaults in, ready to edit.
  const taskDefaults = JSON.parse(document.getElementById("task-defaults").textContent);
  document.getElementById("new-task").addEventListener("change", (event) => {
    document.getElementById("new-task_config").value = JSON.stringify(taskDefaults[event.target.value] || {});
  });
  // Choosing a strategy fills its parameters' defaults in, the same way.
  const strategyDefaults = JSON.parse(document.getElementById("strategy-defaults").textContent);
  document.getElementById("new-strategy").addEventListener("change", (event) => {
    document.getElementById("new-strategy_config").value = JSON.stringify(strategyDefaults[event.target.value] || {});
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    try {
      for (const input of form.querySelectorAll("[data-kind]")) body[input.name] = readField(input);
    } catch (err) {
      toast(`run not created: ${err.message}`);
      return;
    }
    const message = document.getElementById("new-run-message");
    setText(message, "creating…");
    try {
      const run = await api("POST", "runs/", body);
      setText(message, "");
      dialog.close();
      showRun(run.id, { push: true });
    } catch (err) {
      setText(message, "");
      toast(`run not created: ${err.describe ? err.describe() : err.message}`);
    }
  });
}
