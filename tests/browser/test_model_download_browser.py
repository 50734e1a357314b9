"""An operator downloads a run's model from the dashboard: the page asks the API, waits while the
real engine renders the file (202), and saves it; the file loads into the task's model."""
import pytest
import safetensors.torch

from fedcore.tasks import load_task

pytestmark = pytest.mark.e2e


def test_an_operator_downloads_the_model_as_safetensors_from_the_run_page(fed_server, operator_page):
    server, page = fed_server, operator_page
    run = server.create_run(name="download", rounds=3, min_clients=2)  # version 0: its initial model
    page.goto(f"{server.url}/runs/{run['id']}/")
    page.wait_for_selector("#download-version option", state="attached")
    assert page.input_value("#download-version") == "0"
    page.select_option("#download-format", "safetensors")
    with page.expect_download(timeout=60_000) as info:
        page.click("#download-model")
    download = info.value
    assert download.suggested_filename == f"run-{run['id']}-v0.safetensors"
    page.wait_for_function("document.getElementById('download-message').textContent.includes('saved')")

    task = load_task(run["task"])
    model = task.build_model(run["task_config"])
    model.load_state_dict(safetensors.torch.load_file(download.path()), strict=True)
    assert page.errors == []
