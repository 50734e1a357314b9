import numpy as np
import pytest
from django.core.management import CommandError, call_command

from fedcore import codec
from protocol_helpers import delta_body
from rounds import blobs
from rounds.models import Broadcast, Run

pytestmark = pytest.mark.django_db


def _closed_round(run, device):
    alpha, beta = device("alpha", 100), device("beta", 50)
    for dev, shift, examples in ((alpha, 0.01, 100), (beta, -0.02, 50)):
        task = dev.task().json()
        assert dev.upload(task, delta_body(run, task, shift)[0], num_examples=examples).status_code == 201
    return run.versions.get(number=1)


def test_the_audit_reproduces_every_version_from_its_updates(run, device, capsys):
    _closed_round(run, device)
    call_command("audit_run", run.pk)
    assert "round 1: 2 updates -> v1: ok" in capsys.readouterr().out


def test_the_audit_notices_a_tampered_version(run, device):
    version = _closed_round(run, device)
    arrays = {k: np.array(v) for k, v in codec.decode(blobs.load(version.blob.name)).arrays.items()}
    first = next(iter(arrays))
    arrays[first] = arrays[first] + 1e-3
    data = codec.encode(arrays, encoding="float32", kind="full")
    version.blob.name = blobs.store("tampered", data, blobs.sha256(data))
    version.save()
    with pytest.raises(CommandError, match="do not match"):
        call_command("audit_run", run.pk)


def test_the_audit_checks_the_broadcast_replicas_too(run, device, capsys):
    Run.objects.filter(pk=run.pk).update(download_encoding="int4")
    _closed_round(run, device)
    call_command("audit_run", run.pk)
    assert "2 broadcast(s), every replica rebuilt exactly" in capsys.readouterr().out


def test_the_audit_notices_a_replica_that_its_delta_does_not_lead_to(run, device):
    Run.objects.filter(pk=run.pk).update(download_encoding="int4")
    _closed_round(run, device)
    stored = Broadcast.objects.get(version__run=run, version__number=1)
    arrays = {k: np.array(v) for k, v in codec.decode(blobs.load(stored.replica_blob.name)).arrays.items()}
    first = next(k for k, v in arrays.items() if v.dtype == np.float32)
    arrays[first] = arrays[first] + 1e-3
    data = codec.encode(arrays, encoding="float32", kind="full")
    stored.replica_blob.name = blobs.store("tampered", data, blobs.sha256(data))
    stored.replica_sha256 = blobs.sha256(data)
    stored.save()
    with pytest.raises(CommandError, match="broadcast"):
        call_command("audit_run", run.pk)
