"""The dashboard's status sets have one home, the server's: the page embeds them, and no script
lists statuses of its own."""
import json
import re
from pathlib import Path

import pytest

import dashboard
from clients.models import DROPPING_STATUSES, GONE_STATUSES, SELECTABLE_STATUSES, ClientStatus
from dashboard_helpers import running_run
from rounds.lifecycle import RUN_MOVES
from rounds.models import TERMINAL_RUN_STATUSES, RoundStatus, RunStatus

SCRIPTS = Path(dashboard.__file__).parent / "static" / "dashboard" / "js"
STATUS_NAMES = {str(s) for s in (*ClientStatus, *RunStatus, *RoundStatus)}


def _embedded_sets(html: str) -> dict:
    match = re.search(r'<script id="status-sets" type="application/json">(.*?)</script>', html, re.S)
    assert match, "the page embeds no status sets"
    return json.loads(match.group(1))


@pytest.mark.django_db
@pytest.mark.parametrize("with_run", [True, False])
def test_the_page_embeds_the_servers_status_sets(client, django_user_model, with_run):
    if with_run:
        running_run()
    client.force_login(django_user_model.objects.create_user("olivia", password="pw-olivia-123", is_staff=True))
    sets = _embedded_sets(client.get("/").content.decode())
    assert {name: set(values) for name, values in sets["client"].items()} == {
        "gone": GONE_STATUSES, "dropping": DROPPING_STATUSES, "selectable": SELECTABLE_STATUSES,
    }
    assert set(sets["run"]["terminal"]) == TERMINAL_RUN_STATUSES
    assert {action: set(allowed) for action, allowed in sets["run"]["controls"].items()} == {
        action: allowed_from for action, (allowed_from, _) in RUN_MOVES.items()
    }


def status_lists(script: str) -> list[str]:
    """Places in ``script`` that list two or more statuses themselves: an array of string
    literals, or one expression comparing ``.status`` with several names."""
    found = []
    for array in re.finditer(r'\[\s*"[^"\n]*"(?:\s*,\s*"[^"\n]*")+\s*,?\s*\]', script):
        if len(set(re.findall(r'"([^"\n]*)"', array.group(0))) & STATUS_NAMES) >= 2:
            found.append(array.group(0))
    for line in script.splitlines():
        compared = set(re.findall(r'\.status\s*[!=]==?\s*"([^"]*)"', line)) & STATUS_NAMES
        if len(compared) >= 2:
            found.append(line.strip())
    return found


def test_no_script_lists_statuses_of_its_own():
    scripts = sorted(SCRIPTS.glob("*.js"))
    assert scripts
    found = {path.name: status_lists(path.read_text()) for path in scripts}
    assert {name: lists for name, lists in found.items() if lists} == {}


@pytest.mark.parametrize("script", [
    'const GONE = new Set(["left", "kicked"]);',
    'const CONTROLS = {\n  stop: ["draft", "running", "paused"],\n};',
    'if (["finished", "stopped", "failed"].includes(run.status)) return;',
    'if (c.status !== "left" && c.status !== "kicked") clients++;',
])
def test_the_check_finds_a_status_list(script):
    assert status_lists(script)


@pytest.mark.parametrize("script", [
    'const DANGER = new Set(["kick", "reject", "ban"]);',
    'for (const name of ["name", "state", "round", "progress"]) {}',
    'if (rnd.status === "open") return rnd;',
    'const GONE = new Set(sets.client.gone);',
])
def test_the_check_leaves_other_lists_alone(script):
    assert not status_lists(script)
