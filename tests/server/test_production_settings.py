"""The README's production configuration passes ``manage.py check --deploy``, and the settings it
turns on are the ones Django enforces."""
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Production: many server processes and engine workers"


def documented_environment() -> dict[str, str]:
    """Every ``export`` of the README's production block, as a shell would set them."""
    section = (ROOT / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    env = {}
    for line in block.splitlines():
        if line.startswith("export "):
            for word in shlex.split(line, comments=True)[1:]:
                name, _, value = word.partition("=")
                env[name] = value
    return env


def manage(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items()
            if k not in ("DEBUG", "DJANGO_SETTINGS_MODULE") and not k.startswith("FEDPLATFORM_")}
    full.update(env)
    # This machine's services, not the example's host names (the checks open no connection).
    full["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    full.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=120)


def test_the_documented_production_configuration_passes_check_deploy(tmp_path):
    env = documented_environment()
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "FEDPLATFORM_HTTPS", "FEDPLATFORM_REQUIRE_APPROVAL",
            "FEDPLATFORM_ENROLLMENT_KEY"} <= set(env)
    env["SECRET_KEY"] = secrets.token_urlsafe(50)  # what the README says to put there
    env["FEDPLATFORM_ENROLLMENT_KEY"] = secrets.token_urlsafe(24)
    done = manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


def test_without_the_https_settings_check_deploy_names_what_is_missing(tmp_path):
    done = manage(["check", "--deploy", "--fail-level", "WARNING"], {"ALLOWED_HOSTS": "fed.example.org"}, tmp_path)
    assert done.returncode != 0
    for check in ("fedplatform.E001", "security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in done.stderr + done.stdout, check


def test_https_without_a_secret_key_refuses_to_start(tmp_path):
    done = manage(["check"], {"FEDPLATFORM_HTTPS": "1", "ALLOWED_HOSTS": "fed.example.org"}, tmp_path)
    assert done.returncode != 0
    assert "SECRET_KEY must be set" in done.stderr


def test_the_proxy_header_makes_requests_secure_and_http_is_redirected(tmp_path):
    env = {**documented_environment(), "SECRET_KEY": secrets.token_urlsafe(50)}
    script = (
        "import django; django.setup(); from django.test import Client; c = Client();"
        "r = c.get('/api/v1/runs/', HTTP_HOST='fed.example.org'); print(r.status_code, r['Location']);"
        "r = c.get('/api/v1/runs/', HTTP_HOST='fed.example.org', HTTP_X_FORWARDED_PROTO='https');"
        "print(r.status_code, r['Strict-Transport-Security'])"
    )
    full = {k: v for k, v in os.environ.items() if not k.startswith("FEDPLATFORM_")}
    full.update(env, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", DJANGO_SETTINGS_MODULE="fedplatform.settings")
    full.pop("REDIS_URL", None)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    redirect, secure = done.stdout.split("\n")[:2]
    assert redirect == "301 https://fed.example.org/api/v1/runs/"
    status, hsts = secure.split(" ", 1)
    assert status == "401"  # served (and refused for want of credentials), not redirected
    assert hsts == "max-age=31536000; includeSubDomains; preload"
