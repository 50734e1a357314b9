// The configuration form: shows the newest configuration and PATCHes only the fields the
// operator changed. The server versions the change and applies it from the next round.
import { api } from "./api.js";
import { toast } from "./dom.js";
import { setText } from "./format.js";
import { TERMINAL_RUN } from "./statuses.js";

const form = () => document.getElementById("config-form");
const dirty = new Set(); // fields the operator is editing: live updates must not overwrite them

export function readField(input) {
  switch (input.dataset.kind) {
    case "bool": return input.checked;
    case "int": return input.value === "" ? null : parseInt(input.value, 10);
    case "float": return input.value === "" ? null : parseFloat(input.value);
    case "json": {
      try {
        return input.value.trim() === "" ? {} : JSON.parse(input.value);
      } catch (err) {
        throw new Error(`${input.name} is not valid JSON: ${err.message}`);
      }
    }
    default: return input.value;
  }
}

function writeField(input, value) {
  if (input.dataset.kind === "bool") input.checked = Boolean(value);
  else if (input.dataset.kind === "json") input.value = JSON.stringify(value ?? {});
  else input.value = value == null ? "" : String(value);
}

export function renderConfig(store, { reset = false } = {}) {
  if (reset) dirty.clear();
  const values = (store.config && store.config.values) || {};
  for (const input of form().querySelectorAll("[data-kind]")) {
    if (!dirty.has(input.name) && input.name in values) writeField(input, values[input.name]);
    input.disabled = !store.run || TERMINAL_RUN.has(store.run.status);
  }
  form().querySelector("button[type=submit]").disabled = !store.run || TERMINAL_RUN.has(store.run.status);
}

export function initConfig(store) {
  form().addEventListener("input", (event) => dirty.add(event.target.name));
  form().addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = document.getElementById("config-message");
    const values = (store().config && store().config.values) || {};
    const changes = {};
    for (const input of form().querySelectorAll("[data-kind]")) {
      const value = readField(input);
      const same = input.dataset.kind === "json" ? JSON.stringify(value) === JSON.stringify(values[input.name]) : value === values[input.name];
      if (!same) changes[input.name] = value;
    }
    if (!Object.keys(changes).length) {
      setText(message, "nothing changed");
      return;
    }
    try {
      const run = await api("PATCH", `runs/${store().run.id}/`, changes);
      dirty.clear();
      setText(message, `saved as config v${run.config_version ?? "?"}: applies from the next round`);
    } catch (err) {
      setText(message, "");
      toast(`configuration not saved: ${err.describe ? err.describe() : err.message}`);
    }
  });
}
