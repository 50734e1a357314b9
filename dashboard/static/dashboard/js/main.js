// The dashboard: renders from the JSON snapshot embedded in the page, then applies websocket
// events in place. Nothing here reloads the page; switching runs and resyncing fetch JSON.
import { fetchSnapshot, runPageUrl, SessionExpired } from "./api.js";
import { renderCharts, resetCharts } from "./charts.js";
import { renderClients } from "./clients.js";
import { initConfig, renderConfig } from "./config.js";
import { initControls } from "./controls.js";
import { toast } from "./dom.js";
import { initDownload, renderDownload, resetDownload } from "./download.js";
import { connect } from "./live.js";
import { renderNav } from "./nav.js";
import { renderRounds } from "./rounds.js";
import { renderDeadline, renderRun } from "./runcard.js";
import { Store } from "./state.js";
import { initTimeline, renderTimeline, resetTimeline } from "./timeline.js";

const RESYNC_DEBOUNCE_MS = 400;

let store = new Store(JSON.parse(document.getElementById("snapshot").textContent));
let socket = null;
let resyncTimer = null;
// Each snapshot request buffers the events that arrive while it is in flight, to replay them on
// top of it; a response older than the snapshot already shown is dropped.
const inFlight = new Set();
let requested = 0;
let shown = 0;

const RENDER = {
  nav: () => renderNav(store),
  run: () => { renderRun(store); renderDownload(store); },
  clients: () => renderClients(store),
  rounds: () => renderRounds(store),
  charts: () => renderCharts(store),
  timeline: () => renderTimeline(store),
  config: () => renderConfig(store),
};

function render(views) {
  document.getElementById("empty").hidden = Boolean(store.run);
  document.getElementById("run-view").hidden = !store.run;
  RENDER.nav();
  if (!store.run) return;
  for (const view of views) if (view !== "nav") RENDER[view]();
}

function renderAll() {
  render(Object.keys(RENDER));
}

function onEvent(event, data) {
  for (const buffer of inFlight) buffer.push([event, data]);
  const { views, stale } = store.apply(event, data);
  if (views.size) render(views);
  if (stale) scheduleResync();
}

function scheduleResync(delay = RESYNC_DEBOUNCE_MS) {
  clearTimeout(resyncTimer);
  resyncTimer = setTimeout(resync, delay);
}

async function resync(runId = store.run && store.run.id) {
  if (runId == null) return;
  const ticket = ++requested;
  const buffer = [];
  inFlight.add(buffer);
  try {
    const snapshot = await fetchSnapshot(runId);
    if (ticket < shown) return;
    shown = ticket;
    store.load(snapshot);
    // Events that raced the snapshot: reducers assign, so replaying what it already holds is safe.
    for (const [event, data] of buffer) store.apply(event, data);
    renderAll();
  } catch (err) {
    if (err instanceof SessionExpired) sessionExpired();
    else toast(`could not refresh: ${err.message}`);
  } finally {
    inFlight.delete(buffer);
  }
}

function sessionExpired() {
  const text = document.getElementById("live-text");
  text.textContent = "logged out";
  toast("Your session has ended: log in again to keep watching.");
  document.getElementById("live").className = "live off";
}

async function showRun(runId, { push = false } = {}) {
  if (push) history.pushState({ run: runId }, "", runPageUrl(runId));
  resetCharts();
  resetTimeline();
  resetDownload();
  await resync(runId);
  renderConfig(store, { reset: true });
  document.title = `fedplatform · ${store.run ? store.run.name : ""}`;
}

function setLive(on) {
  document.getElementById("live").className = on ? "live on" : "live off";
  document.getElementById("live").title = on ? "live updates: connected" : "live updates: reconnecting";
  document.getElementById("live-text").textContent = on ? "live" : "reconnecting";
}

function init() {
  renderAll();
  renderConfig(store, { reset: true });
  initTimeline(() => renderTimeline(store));
  initConfig(() => store);
  initDownload(() => store);
  initControls({
    store: () => store,
    showRun,
    // Without a socket no event will come: fetch the new state instead.
    afterAction: () => { if (!socket || !socket.isOpen()) resync(); },
  });
  document.getElementById("runs").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-run]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    showRun(Number(link.dataset.run), { push: true });
  });
  window.addEventListener("popstate", (event) => {
    if (event.state && event.state.run) showRun(event.state.run);
  });
  if (store.run) history.replaceState({ run: store.run.id }, "");
  socket = connect({ onEvent, onOpen: () => resync(), onState: setLive });
  // Clocks on the page (last seen, deadline, an open round's lanes) move without events.
  setInterval(() => {
    if (!store.run) return;
    renderClients(store);
    renderDeadline(store);
    if (store.openRound()) renderTimeline(store);
  }, 1000);
}

init();
