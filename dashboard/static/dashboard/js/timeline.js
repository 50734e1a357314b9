// Per-round timeline: one lane per selected client with its download, evaluation, training and
// upload, on a shared axis from the round's opening, so stragglers stand out.
import { el } from "./dom.js";
import { seconds } from "./format.js";

const LABELS = { download: "download", eval: "evaluate base model", train: "train", upload: "upload & wait", work: "working" };
// A lane is a straggler when it ends this much later than the round's typical (median) lane.
const STRAGGLER_FACTOR = 1.5;
const STRAGGLER_MIN_SECONDS = 2;

const select = () => document.getElementById("timeline-round");
let follow = true; // show the newest round until the operator picks another

export function initTimeline(onChange) {
  select().addEventListener("change", () => {
    follow = select().selectedIndex === 0;
    onChange();
  });
}

export function resetTimeline() {
  follow = true;
}

function median(values) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function syncOptions(rounds) {
  const box = select();
  const wanted = rounds.map((r) => [String(r.id), `${r.number} · ${r.status}`]);
  const current = [...box.options].map((o) => [o.value, o.textContent]);
  if (JSON.stringify(wanted) === JSON.stringify(current)) return;
  const chosen = box.value;
  box.replaceChildren(...wanted.map(([value, text]) => el("option", { value, text })));
  if (!follow && wanted.some(([value]) => value === chosen)) box.value = chosen;
}

export function renderTimeline(store) {
  const box = document.getElementById("timeline");
  const rounds = store.rounds.filter((r) => r.lanes).reverse();
  syncOptions(rounds);
  const rnd = rounds.find((r) => String(r.id) === select().value) || rounds[0];
  if (!rnd) {
    box.replaceChildren(el("p", { class: "muted", text: "No round yet." }));
    return;
  }
  const opened = Date.parse(rnd.opened_at);
  const elapsed = rnd.closed_at ? (Date.parse(rnd.closed_at) - opened) / 1000 : (store.now() - opened) / 1000;
  const lanes = rnd.lanes.map((lane) => ({ ...lane, shownEnd: lane.end ?? Math.max(lane.start, elapsed) }));
  const span = Math.max(1, elapsed, ...lanes.map((l) => l.shownEnd)) * 1.04;
  const at = (t) => `${Math.min(100, (100 * t) / span).toFixed(3)}%`;
  const typical = median(lanes.filter((l) => l.outcome === "delivered").map((l) => l.end));

  const rows = lanes.map((lane) => {
    const straggler = typical != null && lane.shownEnd > typical * STRAGGLER_FACTOR
      && lane.shownEnd - typical > STRAGGLER_MIN_SECONDS;
    const track = el("div", { class: "tl-track" });
    for (const seg of lane.segments) {
      const end = seg.end ?? lane.shownEnd;
      const width = Math.max(0.3, (100 * (end - seg.start)) / span);
      track.append(el("i", {
        class: `seg seg-${seg.kind}${seg.end == null ? " running" : ""}`,
        style: `left:${at(seg.start)};width:${width.toFixed(3)}%`,
        title: `${LABELS[seg.kind] || seg.kind}: ${seconds(end - seg.start)} (from +${seconds(seg.start)})`,
      }));
    }
    for (const mark of lane.events) {
      track.append(el("b", { class: `tl-mark s-${mark.status}`, style: `left:${at(mark.t)}`,
                             title: `${mark.status} at +${seconds(mark.t)}${mark.reason ? `: ${mark.reason}` : ""}` }));
    }
    const outcome = lane.outcome === "delivered" ? `update at +${seconds(lane.end)}`
      : lane.outcome === "working" ? `working, +${seconds(lane.shownEnd)}` : `${lane.outcome} at +${seconds(lane.shownEnd)}`;
    return el("div", {
      class: `tl-lane outcome-${lane.outcome}${straggler ? " straggler" : ""}`,
      dataset: { client: String(lane.client), outcome: lane.outcome },
    }, el("span", { class: "tl-name", text: lane.name }), track,
       el("span", { class: "tl-end", text: straggler ? `${outcome} · straggler` : outcome }));
  });

  const axis = el("div", { class: "tl-axis" }, el("span", { class: "tl-name", text: `round ${rnd.number}` }));
  const ticks = el("div", { class: "tl-track" });
  const step = niceStep(span);
  for (let t = 0; t <= span; t += step) ticks.append(el("span", { class: "tick", style: `left:${at(t)}`, text: `${+t.toFixed(1)} s` }));
  const deadline = (Date.parse(rnd.deadline) - opened) / 1000;
  if (deadline <= span) ticks.append(el("span", { class: "tick deadline", style: `left:${at(deadline)}`, text: "deadline" }));
  axis.append(ticks, el("span", { class: "tl-end", text: rnd.status === "open" ? "open" : `${rnd.status} at +${seconds(elapsed)}` }));
  box.replaceChildren(axis, ...(rows.length ? rows : [el("p", { class: "muted", text: "Nobody was selected." })]));
}

function niceStep(span) {
  const raw = span / 8;
  const power = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
}
