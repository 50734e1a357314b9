"""The dashboard page: staff only, showing runs, rounds with accuracy and clients' states."""
import pytest

from rounds.models import Round

pytestmark = pytest.mark.django_db


def test_the_dashboard_sends_anonymous_visitors_to_log_in(client, run):
    response = client.get("/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_the_dashboard_refuses_non_staff_users(client, run, django_user_model):
    django_user_model.objects.create_user("eve", password="pw-eve-12345")
    client.login(username="eve", password="pw-eve-12345")
    assert client.get(f"/runs/{run.pk}/").status_code == 302


def test_the_dashboard_lists_rounds_with_accuracy_and_clients_with_states(client, operator, run, device):
    alpha, beta = device("alpha"), device("beta")
    alpha.task()
    Round.objects.filter(run=run).update(metrics={"test_accuracy": 0.8123, "bytes_up": 123456})
    client.force_login(operator)
    html = client.get("/", follow=True).content.decode()
    assert run.name in html
    assert "81.2%" in html
    assert "123.46 kB" in html
    assert html.count('class="status s-training"') == 2


def test_the_fragment_view_renders_only_the_run_body(client, operator, run):
    client.force_login(operator)
    html = client.get(f"/runs/{run.pk}/?fragment=1").content.decode()
    assert "<html" not in html
    assert 'id="rounds"' in html
