"""Regenerate docs/dashboard.png: the dashboard during a real run (not a test; run it by hand).

    .venv/bin/python tests/browser/readme_screenshot.py

Four real workers train a small CNN on Fashion-MNIST; one holds four times the data of the others,
so it is the round's straggler on the timeline. Midway the learning rate is changed (a second
configuration version) and one client is paused, so those states show too.
"""
import importlib.util
import tempfile
import time
from pathlib import Path

# The real-process helpers live with the end-to-end tests. This script runs outside pytest (whose
# pythonpath has tests/e2e), so it imports that one file by its path.
_spec = importlib.util.spec_from_file_location("processes",
                                               Path(__file__).resolve().parents[1] / "e2e" / "processes.py")
assert _spec is not None and _spec.loader is not None
processes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(processes)
OPERATOR, ROOT, Server, Worker, wait_until = (
    processes.OPERATOR, processes.ROOT, processes.Server, processes.Worker, processes.wait_until)

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync", "--disable-quic"]


def closed_rounds(server, run_id: int) -> int:
    return sum(r["status"] == "closed" for r in server.get(f"/api/v1/runs/{run_id}/rounds/"))


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp))
        server.start()
        workers = []
        try:
            run = server.create_run(name="fashion-mnist demo", arch="cnn", dataset="fashion-mnist", rounds=12,
                                    min_clients=3, clients_per_round=4, min_updates=2, local_epochs=1,
                                    learning_rate=0.05, round_timeout=120)
            limits = [800, 800, 800, 3200]
            workers = [Worker(server, run["id"], i, partitions=4, limit=limit, name=f"device-{i + 1}")
                       for i, limit in enumerate(limits)]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=LAUNCH_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
                page.goto(f"{server.url}/admin/login/?next=/")
                page.fill("#id_username", OPERATOR[0])
                page.fill("#id_password", OPERATOR[1])
                page.click("input[type=submit]")
                page.wait_for_selector("#live.on")
                wait_until(lambda: closed_rounds(server, run["id"]) >= 3, 300, what="3 rounds")
                server.api.patch(f"{server.url}/api/v1/runs/{run['id']}/", json={"learning_rate": 0.03}, timeout=30)
                wait_until(lambda: closed_rounds(server, run["id"]) >= 6, 300, what="6 rounds")
                clients = {c["name"]: c["id"] for c in server.get("/api/v1/clients/")}
                server.api.post(f"{server.url}/api/v1/clients/{clients['device-3']}/pause/", timeout=30)
                wait_until(lambda: closed_rounds(server, run["id"]) >= 8, 300, what="8 rounds")
                # The newest closed round shows whole lanes; the open one would be mid-flight.
                rounds = server.get(f"/api/v1/runs/{run['id']}/rounds/")
                last_closed = max(r["id"] for r in rounds if r["status"] == "closed")
                page.select_option("#timeline-round", str(last_closed))
                time.sleep(1.5)
                target = ROOT / "docs" / "dashboard.png"
                page.screenshot(path=str(target), full_page=True)
                print(f"wrote {target}")
                browser.close()
        finally:
            for worker in workers:
                worker.stop()
            server.kill()


if __name__ == "__main__":
    main()
