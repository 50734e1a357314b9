// Small DOM helpers: keyed, in-place table updates instead of re-rendering HTML.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// Make a container's children (a tbody's rows, a nav's links) match items, in order, reusing the
// node of each key: a node that stays keeps its identity, so focus, hover and text selection
// survive live updates.
export function syncRows(container, items, keyOf, make, update) {
  const existing = new Map([...container.children].map((row) => [row.dataset.key, row]));
  let previous = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let row = existing.get(key);
    if (row) existing.delete(key);
    else {
      row = make(item);
      row.dataset.key = key;
    }
    update(row, item);
    const wanted = previous ? previous.nextElementSibling : container.firstElementChild;
    if (row !== wanted) container.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

export function toggleClass(node, name, on) {
  if (node.classList.contains(name) !== on) node.classList.toggle(name, on);
}

export function toast(message, kind = "error") {
  const box = document.getElementById("toasts");
  const note = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status", text: message });
  box.append(note);
  setTimeout(() => note.remove(), kind === "error" ? 8000 : 4000);
}
