// Per-round charts (Chart.js, vendored). Each chart is built once and its data replaced in
// place, so a new round adds a point without redrawing the page. Each figure's data-points
// attribute says how many rounds it shows (what tests and screen readers can read).

const MB = 1e6;
const charts = new Map();
let lastSignature = "";

function chartFor(id, config) {
  if (!charts.has(id)) {
    const canvas = document.querySelector(`#${id} canvas`);
    if (typeof Chart === "undefined" || !canvas) return null; // the library failed to load
    charts.set(id, new Chart(canvas, config));
  }
  return charts.get(id);
}

const baseOptions = (extra = {}) => ({
  animation: false, // live updates should land at once, not tween
  maintainAspectRatio: false,
  interaction: { mode: "index", intersect: false },
  plugins: { legend: { labels: { boxWidth: 12 } } },
  scales: { x: { title: { display: true, text: "round" } }, ...extra },
});

function line(label, data, color, axis = "y", extra = {}) {
  return { type: "line", label, data, borderColor: color, backgroundColor: color, yAxisID: axis, tension: 0.2,
           pointRadius: 3, spanGaps: true, ...extra };
}

function bar(label, data, color, axis = "y") {
  return { type: "bar", label, data, backgroundColor: color, yAxisID: axis };
}

const SPECS = {
  "chart-accuracy": (rows) => ({
    data: {
      labels: rows.map((r) => r.number),
      datasets: [
        line("test accuracy %", rows.map((r) => pctOf(r.metrics.test_accuracy)), "#1f7a4d"),
        line("test loss", rows.map((r) => r.metrics.test_loss ?? null), "#b5472b", "y1"),
      ],
    },
    options: baseOptions({
      y: { title: { display: true, text: "accuracy %" }, suggestedMin: 0, suggestedMax: 100 },
      y1: { position: "right", title: { display: true, text: "loss" }, grid: { drawOnChartArea: false }, suggestedMin: 0 },
    }),
    points: rows.filter((r) => r.metrics.test_accuracy != null).length,
  }),
  "chart-participants": (rows) => ({
    data: {
      labels: rows.map((r) => r.number),
      datasets: [
        bar("updates aggregated", rows.map((r) => r.metrics.participants ?? r.received.length), "#3b6fb6"),
        line("selected", rows.map((r) => r.expected.length), "#8a94a6"),
      ],
    },
    options: baseOptions({ y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: "clients" } } }),
    points: rows.length,
  }),
  "chart-bytes": (rows) => ({
    data: {
      labels: rows.map((r) => r.number),
      datasets: [
        bar("bytes up (MB)", rows.map((r) => mb(r.metrics.bytes_up)), "#3b6fb6"),
        bar("bytes down (MB)", rows.map((r) => mb(r.metrics.bytes_down)), "#1f7a4d"),
        bar("float32 up + down (MB)", rows.map((r) => mb(float32BothWays(r.metrics))), "#c8cfdb"),
        line("× smaller than float32, up + down", rows.map((r) => bothWaysRatio(r.metrics)), "#d08a1a", "y1"),
      ],
    },
    options: baseOptions({
      y: { beginAtZero: true, title: { display: true, text: "MB per round" } },
      y1: { position: "right", beginAtZero: true, title: { display: true, text: "× smaller" }, grid: { drawOnChartArea: false } },
    }),
    points: rows.filter((r) => r.metrics.bytes_up != null).length,
  }),
  "chart-duration": (rows) => ({
    data: {
      labels: rows.map((r) => r.number),
      datasets: [
        bar("round duration s", rows.map((r) => r.metrics.duration_seconds ?? null), "#6d59a8"),
        line("aggregation s", rows.map((r) => r.metrics.aggregation_seconds ?? null), "#1f7a4d"),
      ],
    },
    options: baseOptions({ y: { beginAtZero: true, title: { display: true, text: "seconds" } } }),
    points: rows.filter((r) => r.metrics.duration_seconds != null).length,
  }),
};

function pctOf(v) {
  return v == null ? null : Math.round(v * 1000) / 10;
}

function mb(v) {
  return v == null ? null : Math.round((v / MB) * 1000) / 1000;
}

function float32Total(m) {
  return m.float32_bytes_per_update != null && m.participants != null ? m.float32_bytes_per_update * m.participants : null;
}

// Each participant downloads the model and uploads an update: float32 both ways is twice the
// float32 size per participant, the reference Flower-style traffic is measured against.
function float32BothWays(m) {
  const one = float32Total(m);
  return one == null ? null : 2 * one;
}

function bothWaysRatio(m) {
  const reference = float32BothWays(m);
  const sent = (m.bytes_up ?? 0) + (m.bytes_down ?? 0);
  return reference == null || !sent ? null : Math.round((reference / sent) * 10) / 10;
}

export function renderCharts(store, force = false) {
  const rows = store.closedRounds();
  // Only rounds that closed carry metrics; skip the redraw when none changed.
  const signature = JSON.stringify(rows.map((r) => [r.id, r.metrics, r.expected.length]));
  if (!force && signature === lastSignature) return;
  lastSignature = signature;
  for (const [id, spec] of Object.entries(SPECS)) {
    const { data, options, points } = spec(rows);
    const chart = chartFor(id, { type: "bar", data, options });
    if (chart) {
      chart.data.labels = data.labels;
      data.datasets.forEach((dataset, i) => {
        if (chart.data.datasets[i]) chart.data.datasets[i].data = dataset.data;
        else chart.data.datasets.push(dataset);
      });
      chart.update("none");
    }
    document.getElementById(id).dataset.points = String(points);
  }
}

export function resetCharts() {
  lastSignature = "";
}
