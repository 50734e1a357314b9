// The per-round table: status, configuration version, participants and the round's metrics.
import { el, syncRows } from "./dom.js";
import { bytes, num, pct, seconds, setText } from "./format.js";

function makeRow() {
  const row = el("tr");
  for (const name of ["number", "status", "config", "participants", "acc", "loss", "bytes", "ratio", "duration"]) {
    row.append(el("td", { class: `r-${name}` }));
  }
  return row;
}

function updateRow(row, r) {
  const m = r.metrics || {};
  const cell = (name) => row.querySelector(`.r-${name}`);
  row.className = `round-${r.status}`;
  row.dataset.round = String(r.number);
  setText(cell("number"), String(r.number));
  setText(cell("status"), r.status === "abandoned" && m.abandoned ? `abandoned (${m.abandoned})` : r.status);
  setText(cell("config"), r.config_version == null ? "" : `v${r.config_version}`);
  const participants = m.participants ?? r.received.length;
  setText(cell("participants"), `${participants} of ${r.expected.length}`);
  setText(cell("acc"), pct(m.test_accuracy));
  setText(cell("loss"), num(m.test_loss));
  setText(cell("bytes"), m.bytes_up == null ? "–" : `${bytes(m.bytes_up)} / ${bytes(m.bytes_down)}`);
  setText(cell("ratio"), m.compression_ratio ? `${m.compression_ratio.toFixed(2)}× smaller` : "–");
  setText(cell("duration"), seconds(m.duration_seconds));
}

export function renderRounds(store) {
  const tbody = document.querySelector("#rounds tbody");
  // Newest first: the round being trained is what an operator looks for.
  syncRows(tbody, [...store.rounds].reverse(), (r) => r.id, makeRow, updateRow);
}
