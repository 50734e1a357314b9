// The run switcher in the header.
import { el, syncRows } from "./dom.js";
import { runPageUrl } from "./api.js";
import { setText } from "./format.js";

export function renderNav(store) {
  const nav = document.getElementById("runs");
  const current = store.run ? store.run.id : null;
  syncRows(nav, store.runs, (r) => r.id,
    (r) => el("a", { href: runPageUrl(r.id), dataset: { run: String(r.id) } }),
    (a, r) => {
      setText(a, `${r.name} #${r.id} · ${r.status}`);
      a.className = r.id === current ? "current" : "";
      if (r.id === current) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
}
