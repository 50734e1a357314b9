// The page's model: the server's JSON snapshot, kept current by applying websocket events.
//
// Every reducer *assigns* what the event says (never increments), so applying an event the
// snapshot already reflects is harmless. That is what lets a resync replay the events that
// arrived while the snapshot was in flight without double counting.

import { DROPPING, SELECTABLE } from "./statuses.js";

export class Store {
  constructor(snapshot) {
    this.load(snapshot);
  }

  load(snapshot) {
    this.s = snapshot;
    // The server's clock, estimated: deadlines and "last seen" are server times.
    this.offsetMs = Date.parse(snapshot.server_time) - Date.now();
    this.clients = new Map(snapshot.clients.map((c) => [c.id, c]));
  }

  get run() { return this.s.run; }
  get rounds() { return this.s.rounds; }
  get config() { return this.s.config; }
  get runs() { return this.s.runs; }

  now() { return Date.now() + this.offsetMs; }
  nowIso() { return new Date(this.now()).toISOString(); }

  openRound() {
    for (let i = this.rounds.length - 1; i >= 0; i--) if (this.rounds[i].status === "open") return this.rounds[i];
    return null;
  }

  roundById(id) { return this.rounds.find((r) => r.id === id) || null; }

  closedRounds() { return this.rounds.filter((r) => r.status === "closed"); }

  readyClients() {
    let n = 0;
    for (const c of this.clients.values()) if (SELECTABLE.has(c.status)) n++;
    return n;
  }

  // Apply one event; returns the set of views to redraw ("nav", "run", "clients", "rounds",
  // "timeline", "config") and whether details only a snapshot holds are now stale.
  apply(event, data) {
    const handler = {
      "client.status": this.#clientStatus,
      "round.opened": this.#roundOpened,
      "round.update_received": this.#updateReceived,
      "round.closed": this.#roundClosed,
      // The test evaluation fills in a closed round's metrics later, as a task of its own.
      "round.evaluated": this.#roundClosed,
      "run.changed": this.#runChanged,
    }[event];
    return handler ? handler.call(this, data) : { views: new Set(), stale: false };
  }

  #clientStatus(d) {
    if (!this.run || d.run !== this.run.id) return none();
    let client = this.clients.get(d.id);
    if (!client) {
      if (d.name === undefined) return { views: new Set(), stale: true }; // a heartbeat of a client we never saw
      client = { id: d.id, name: d.name, round: null, held_version: null, progress: 0 };
      this.clients.set(d.id, client);
      this.s.clients.push(client);
    }
    for (const key of ["name", "status", "progress", "num_examples", "last_seen", "bytes_sent", "bytes_received"]) {
      if (d[key] !== undefined) client[key] = d[key];
    }
    // Heartbeat payloads (no name) carry no time, but a heartbeat means the device was just seen.
    if (d.name === undefined && d.last_seen === undefined) client.last_seen = this.nowIso();
    const open = this.openRound();
    if (DROPPING.has(client.status)) {
      client.round = null;
      if (open && !open.received.includes(client.id)) open.expected = open.expected.filter((id) => id !== client.id);
    } else if (open && open.expected.includes(client.id)) {
      client.round = open.number;
    }
    return { views: new Set(["clients", "run", "timeline"]), stale: false };
  }

  #roundOpened(d) {
    if (!this.run || d.run !== this.run.id) return none();
    let rnd = this.roundById(d.id);
    if (!rnd) {
      const cfg = this.config || {};
      rnd = {
        id: d.id,
        number: d.number,
        status: "open",
        // Newer servers send these; until then the event's arrival is a close stand-in.
        opened_at: d.opened_at || this.nowIso(),
        deadline: d.deadline,
        closed_at: null,
        expected: [],
        received: [],
        config_version: d.config_version ?? cfg.version ?? null,
        hyperparameters: d.hyperparameters || null,
        upload_encoding: d.upload_encoding || (cfg.values || {}).upload_encoding || null,
        metrics: d.metrics || {},
        lanes: [],
      };
      this.rounds.push(rnd);
      this.rounds.sort((a, b) => a.number - b.number || a.id - b.id);
      // A round opens with the newest configuration: nothing is pending any more.
      if (this.config && this.config.version != null) {
        this.config.in_force = this.config.version;
        this.config.in_force_values = { ...this.config.values };
        this.config.pending = {};
      }
    }
    rnd.status = d.status || "open";
    rnd.expected = [...d.expected];
    rnd.deadline = d.deadline;
    for (const id of rnd.expected) {
      const client = this.clients.get(id);
      if (client) client.round = rnd.number;
      if (!rnd.lanes.some((l) => l.client === id)) {
        const start = Math.max(0, (this.now() - Date.parse(rnd.opened_at)) / 1000);
        rnd.lanes.push({ client: id, name: client ? client.name : `#${id}`, start, end: null,
                         outcome: "working", segments: [{ kind: "work", start, end: null }], events: [] });
      }
    }
    return { views: new Set(["run", "clients", "rounds", "timeline", "config"]), stale: !d.opened_at };
  }

  #updateReceived(d) {
    const rnd = this.roundById(d.round);
    if (!rnd) return none();
    if (!rnd.received.includes(d.client)) rnd.received = [...rnd.received, d.client];
    const lane = (rnd.lanes || []).find((l) => l.client === d.client);
    if (lane && lane.end === null) {
      const end = Math.max(lane.start, (this.now() - Date.parse(rnd.opened_at)) / 1000);
      Object.assign(lane, { end, outcome: "delivered", segments: [{ kind: "upload", start: lane.start, end }] });
    }
    // The per-phase durations are in the update's metrics, which only the snapshot has.
    return { views: new Set(["run", "rounds", "timeline"]), stale: true };
  }

  #roundClosed(d) {
    if (!this.run || d.run !== this.run.id) return none();
    const rnd = this.roundById(d.id);
    if (!rnd) return { views: new Set(), stale: true };
    rnd.status = d.status;
    rnd.metrics = d.metrics || {};
    rnd.closed_at = d.closed_at || rnd.closed_at || this.nowIso();
    rnd.expected = [...d.expected];
    for (const client of this.clients.values()) if (client.round === rnd.number) client.round = null;
    const end = (Date.parse(rnd.closed_at) - Date.parse(rnd.opened_at)) / 1000;
    for (const lane of rnd.lanes || []) {
      if (lane.end === null) {
        lane.end = Math.max(lane.start, end);
        lane.outcome = rnd.status === "abandoned" ? "abandoned" : "missed";
        lane.segments = [{ kind: "work", start: lane.start, end: lane.end }];
      }
    }
    this.run.completed_rounds = this.closedRounds().length;
    return { views: new Set(["run", "clients", "rounds", "timeline", "charts"]), stale: true };
  }

  #runChanged(d) {
    const views = new Set(["nav"]);
    const entry = this.runs.find((r) => r.id === d.id);
    if (entry) Object.assign(entry, { name: d.name, status: d.status });
    else this.runs.unshift({ id: d.id, name: d.name, status: d.status });
    if (!this.run || d.id !== this.run.id) return { views, stale: false };
    for (const key of ["name", "status", "rounds", "completed_rounds", "config_version"]) {
      if (d[key] !== undefined) this.run[key] = d[key];
    }
    const cfg = this.config;
    if (cfg && d.config && d.config_version != null && d.config_version !== cfg.version) {
      cfg.version = d.config_version;
      cfg.values = { ...d.config };
      Object.assign(this.run, d.config);
      // Before the first round there is nothing in force yet: the first round takes the newest.
      if (cfg.in_force == null || !this.rounds.some((r) => r.status !== "abandoned")) {
        cfg.in_force = cfg.version;
        cfg.in_force_values = { ...cfg.values };
      }
      cfg.pending = diff(cfg.in_force_values, cfg.values, cfg.in_force === cfg.version);
      views.add("config");
    }
    views.add("run");
    return { views, stale: false };
  }
}

function none() {
  return { views: new Set(), stale: false };
}

function diff(before, after, same) {
  if (same) return {};
  const out = {};
  for (const [key, value] of Object.entries(after)) if (before[key] !== value) out[key] = [before[key], value];
  return out;
}

// What the run is doing now, in words.
export function phase(store) {
  const run = store.run;
  if (!run) return "";
  switch (run.status) {
    case "draft": return "not started: press start";
    case "paused": return "paused: no new round opens";
    case "finished": return "finished";
    case "stopped": return "stopped by an operator";
    case "failed": return "failed";
  }
  const open = store.openRound();
  if (open) {
    const expected = open.expected.length;
    const received = open.received.length;
    if (expected > 0 && received >= expected) return `round ${open.number}: aggregating`;
    return `round ${open.number}: training (${received} of ${expected} updates in)`;
  }
  const ready = store.readyClients();
  return `waiting for clients: ${ready} ready, ${run.min_clients} needed to open a round`;
}
