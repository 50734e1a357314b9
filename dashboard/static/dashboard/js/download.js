// The trained model out: any global version of the run as safetensors or ONNX. The server
// renders a file on the first request for it (202 until its engine is done), then keeps it.
import { fetchFile } from "./api.js";
import { el, toast } from "./dom.js";
import { setText } from "./format.js";

const versionSelect = () => document.getElementById("download-version");
let newestShown = null; // the newest version the list holds: the choice follows it unless changed
let busy = false;

export function renderDownload(store) {
  const run = store.run;
  const select = versionSelect();
  const newest = run.current_version;
  document.getElementById("download-model").disabled = newest == null || busy;
  if (newest === newestShown) return;
  const followNewest = select.value === "" || Number(select.value) === newestShown;
  const numbers = newest == null ? [] : Array.from({ length: newest + 1 }, (_, i) => newest - i);
  select.replaceChildren(...numbers.map((n) => el("option", { value: String(n), text: n === newest ? `v${n} (newest)` : `v${n}` })));
  if (!followNewest && numbers.includes(Number(select.dataset.chosen))) select.value = select.dataset.chosen;
  newestShown = newest;
}

function save({ blob, filename }) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: filename, hidden: "" });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function initDownload(store) {
  const select = versionSelect();
  const button = document.getElementById("download-model");
  const message = document.getElementById("download-message");
  select.addEventListener("change", () => { select.dataset.chosen = select.value; });
  button.addEventListener("click", async () => {
    const run = store().run;
    const version = select.value;
    const format = document.getElementById("download-format").value;
    busy = true;
    button.disabled = true;
    setText(message, "requesting…");
    try {
      const file = await fetchFile(`runs/${run.id}/model/?version=${encodeURIComponent(version)}&format=${format}`, {
        onPending: () => setText(message, `exporting v${version} as ${format}…`),
      });
      save(file);
      setText(message, `${file.filename} saved`);
    } catch (err) {
      setText(message, "");
      toast(`v${version} as ${format}: ${err.describe ? err.describe() : err.message}`);
    } finally {
      busy = false;
      button.disabled = store().run.current_version == null;
    }
  });
}

// Switching runs starts the list afresh, at the new run's newest version.
export function resetDownload() {
  newestShown = null;
  versionSelect().value = "";
  delete versionSelect().dataset.chosen;
  setText(document.getElementById("download-message"), "");
}
