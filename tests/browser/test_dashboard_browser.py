"""An operator in a real browser watches a real run live and steers it: clients change state and
the accuracy chart grows without a reload; pause, kick, a configuration change, stop and a new run
all work from the page, and a dropped socket resynchronises from the snapshot."""
import re

import pytest

from processes import ROOT, Worker, wait_until

pytestmark = pytest.mark.e2e
ARTIFACTS = ROOT / "test-artifacts"

# Records every state each client row shows, so a state held for a moment is not missed.
RECORD_STATES = """() => {
  window.__seen = {};
  const note = () => document.querySelectorAll('#clients tr[data-client]').forEach((row) => {
    const seen = (window.__seen[row.dataset.client] ||= []);
    const status = row.querySelector('.status').textContent;
    if (seen[seen.length - 1] !== status) seen.push(status);
  });
  new MutationObserver(note).observe(document.getElementById('clients'),
                                     {subtree: true, childList: true, characterData: true});
  note();
}"""


def expect(locator):
    # Imported lazily: without chromium (and FEDPLATFORM_BROWSER_TESTS unset) the module is
    # still collected and skipped even where Playwright is not installed.
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _client_ids(server, run_id: int) -> dict[str, int] | None:
    """Name to id of the run's clients, once all three workers have registered."""
    ids = {c["name"]: c["id"] for c in server.get("/api/v1/clients/") if c["run"] == run_id}
    return ids if len(ids) == 3 else None


def _row(page, client_id: int):
    return page.locator(f'#clients tr[data-client="{client_id}"]')


def test_an_operator_watches_a_run_live_then_pauses_and_kicks_a_client(fed_server, operator_page):
    server, page = fed_server, operator_page
    run = server.create_run(
        name="browser", arch="cnn", dataset="fashion-mnist", rounds=1000, min_clients=2, clients_per_round=3,
        min_updates=1, local_epochs=1, batch_size=32, learning_rate=0.05, round_timeout=60,
    )
    page.goto(f"{server.url}/runs/{run['id']}/")
    expect(page.locator("#live")).to_have_class("live on", timeout=20_000)
    page.evaluate("window.__loadMarker = 'set once at load'")
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    page.evaluate(RECORD_STATES)
    points_at_start = int(page.get_attribute("#chart-accuracy", "data-points"))

    workers = [Worker(server, run["id"], index, partitions=3, limit=600) for index in range(3)]
    try:
        ids = wait_until(lambda: _client_ids(server, run["id"]), 60, what="3 clients")
        target = ids["worker-0"]

        # Live: the rows appear and change state, and a closed round adds a point to the chart.
        expect(page.locator("#clients tr[data-client]")).to_have_count(3, timeout=30_000)
        page.wait_for_function(
            "id => (window.__seen[id] || []).includes('training')", arg=str(target), timeout=60_000
        )
        page.wait_for_function(
            "n => Number(document.querySelector('#chart-accuracy').dataset.points) > n",
            arg=points_at_start, timeout=60_000,
        )
        # A closed round's accuracy arrives when the engine's evaluation of its version does (the
        # newest version first, so while rounds close quickly some are never evaluated).
        expect(page.locator("#rounds tbody tr.round-closed", has_text="%").first).to_be_visible(timeout=60_000)

        # A configuration change from the form is versioned and shown until a round takes it up.
        page.fill("#config-learning_rate", "0.02")
        page.click("#config-form button[type=submit]")
        expect(page.locator("#config-message")).to_contain_text("config v2", timeout=10_000)
        assert server.get(f"/api/v1/runs/{run['id']}/")["config_version"] == 2
        expect(page.locator("#config-in-force")).to_contain_text("config v2 in force", timeout=30_000)

        # Pause: the row says so, and so does the API.
        _row(page, target).locator('[data-client-action="pause"]').click()
        expect(_row(page, target).locator(".status")).to_have_text("paused", timeout=10_000)
        assert server.get(f"/api/v1/clients/{target}/")["status"] == "paused"

        # Kick: the worker is told at its next request and exits with code 3; no round selects it.
        _row(page, target).locator('[data-client-action="kick"]').click()
        expect(_row(page, target).locator(".status")).to_have_text("kicked", timeout=10_000)
        kicked_at_round = max(r["number"] for r in server.get(f"/api/v1/runs/{run['id']}/rounds/"))
        assert workers[0].wait(timeout=30) == 3, workers[0].output()[-2000:]
        later = wait_until(
            lambda: [r for r in server.get(f"/api/v1/runs/{run['id']}/rounds/")
                     if r["number"] > kicked_at_round and r["status"] == "closed"],
            60, what="a round opened after the kick to close",
        )
        assert all(target not in r["expected"] for r in later)
        # Every control stays in the row (approve, reject, pause, resume, kick, ban); none applies to a kicked client.
        expect(_row(page, target).locator("[data-client-action]")).to_have_count(6)
        assert _row(page, target).locator('[data-client-action="kick"]').is_disabled()
        assert _row(page, target).locator('[data-client-action="ban"]').is_disabled()

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-browser.png"), full_page=True)

        # Stop from the page: the run ends and the remaining workers leave cleanly.
        page.click('[data-run-action="stop"]')
        expect(page.locator("#run-status")).to_have_text("stopped", timeout=10_000)
        assert [w.wait(timeout=30) for w in workers[1:]] == [0, 0]
    finally:
        for worker in workers:
            worker.stop()

    # Everything above happened in the page that was loaded once.
    assert page.evaluate("window.__loadMarker") == "set once at load"
    assert navigations == []
    assert page.errors == []


def test_an_operator_creates_and_starts_a_run_and_a_dropped_socket_resynchronises(fed_server, operator_page):
    server, page = fed_server, operator_page
    # Every dashboard socket goes through this proxy, so the test can cut it and refuse reconnects.
    proxy = {"allow": True, "sockets": []}

    def route(socket) -> None:
        if not proxy["allow"]:
            socket.close(code=1011)
            return
        socket.connect_to_server()
        proxy["sockets"].append(socket)

    page.route_web_socket(re.compile(r".*/ws/dashboard/$"), route)
    page.goto(f"{server.url}/")
    expect(page.locator("#live")).to_have_class("live on", timeout=20_000)
    page.evaluate("window.__loadMarker = 'set once at load'")

    page.click("#new-run-open")
    page.fill("#new-name", "made in the browser")
    page.fill("#new-rounds", "2")
    page.select_option("#new-strategy", "fedadam")  # its parameters' defaults fill the box, ready to edit
    expect(page.locator("#new-strategy_config")).to_have_value(re.compile(r'"server_lr":0\.01'))
    page.fill("#new-strategy_config", '{"server_lr": 0.05, "clip_norm": 10}')
    page.click("#new-run-form button[type=submit]")
    expect(page.locator("#run-name")).to_have_text("made in the browser", timeout=15_000)
    run_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    created = server.get(f"/api/v1/runs/{run_id}/")
    assert created["rounds"] == 2
    assert created["strategy"] == "fedadam"
    assert (created["strategy_config"]["server_lr"], created["strategy_config"]["clip_norm"]) == (0.05, 10)
    expect(page.locator("#run-model")).to_contain_text("fedadam")
    expect(page.locator("#config-form [name=strategy_config]")).to_have_value(re.compile(r'"server_lr":0\.05'))

    page.click('[data-run-action="start"]')
    expect(page.locator("#run-status")).to_have_text("running", timeout=10_000)
    assert server.get(f"/api/v1/runs/{run_id}/")["status"] == "running"
    expect(page.locator('[data-run-action="start"]')).to_be_disabled()

    # The socket drops; a change made meanwhile is an event the page never receives...
    proxy["allow"] = False
    proxy["sockets"][-1].close()
    expect(page.locator("#live")).to_have_class("live off", timeout=10_000)
    server.api.post(f"{server.url}/api/v1/runs/{run_id}/pause/", timeout=30).raise_for_status()
    page.wait_for_timeout(1000)
    expect(page.locator("#run-status")).to_have_text("running")
    # ...until the socket is back: the page resynchronises from the snapshot.
    proxy["allow"] = True
    expect(page.locator("#live")).to_have_class("live on", timeout=20_000)
    expect(page.locator("#run-status")).to_have_text("paused", timeout=10_000)

    # A refused control is reported, not silently dropped.
    page.evaluate("document.querySelector('[data-run-action=\"start\"]').disabled = false")
    page.click('[data-run-action="start"]')
    expect(page.locator("#toasts .toast")).to_contain_text("cannot start a run that is paused", timeout=10_000)
    page.click('[data-run-action="stop"]')
    expect(page.locator("#run-status")).to_have_text("stopped", timeout=10_000)
    assert page.evaluate("window.__loadMarker") == "set once at load"
    assert page.errors == []
