// Number and time formatting shared by every view; all return plain text (rendered with
// textContent, never innerHTML, so names coming from devices cannot inject markup).

export const isNum = (v) => typeof v === "number" && Number.isFinite(v);

export function pct(v) {
  return isNum(v) ? `${(100 * v).toFixed(1)}%` : "–";
}

export function num(v, digits = 4) {
  return isNum(v) ? v.toFixed(digits) : "–";
}

export function bytes(v) {
  if (!isNum(v)) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let size = v;
  for (const unit of units) {
    if (size < 1000 || unit === "TB") return unit === "B" ? `${size} B` : `${size.toFixed(2)} ${unit}`;
    size /= 1000;
  }
  return "–";
}

export function seconds(v) {
  if (!isNum(v)) return "–";
  if (v < 60) return `${v.toFixed(1)} s`;
  const m = Math.floor(v / 60);
  if (m < 60) return `${m} min ${Math.round(v % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

// "3 s ago" from an ISO time and the estimated server clock (ms).
export function ago(iso, nowMs) {
  if (!iso) return "never";
  const s = Math.max(0, (nowMs - Date.parse(iso)) / 1000);
  if (s < 1.5) return "just now";
  return `${seconds(s).replace(".0 s", " s")} ago`;
}

export function setText(el, text) {
  // Skipping identical writes keeps the DOM still, so selections and hover survive updates.
  if (el && el.textContent !== text) el.textContent = text;
}
