"""The malformed-request corpus (issue 12): every case is a 4xx in the JSON error shape, none is
accepted, none is a 5xx, and memory stays bounded over the whole corpus."""
import json
import tracemalloc

from rest_framework.test import APIClient

from malformed_corpus import Valid, cases
from protocol_helpers import delta_body
from rounds.models import Update

MEMORY_BOUND = 64 << 20  # growth over the corpus; a leak of one body per case would pass this


def test_every_malformed_request_is_refused_with_a_shaped_4xx(run, device):
    alpha, beta = device("alpha", 100), device("beta", 100)
    task = alpha.task().json()
    body, _ = delta_body(run, task, 0.01)
    valid = Valid(run.pk, task["round"], alpha.id, beta.id, alpha.token, beta.token, body)
    model_before = run.versions.order_by("-number").first().sha256
    api = APIClient()
    corpus = list(cases(valid))
    assert len(corpus) >= 1500
    tracemalloc.start()
    start, _ = tracemalloc.get_traced_memory()
    wrong = []
    for case in corpus:
        meta = {("CONTENT_TYPE" if k == "Content-Type" else "CONTENT_LENGTH" if k == "Content-Length"
                 else "HTTP_" + k.upper().replace("-", "_")):
                # as a server reads them off the wire: UTF-8 bytes seen as latin-1
                v.encode().decode("latin-1") for k, v in case.headers.items()}
        response = api.generic(case.method, case.path, case.body, **meta)
        ok = 400 <= response.status_code < 500
        if ok:
            shape = json.loads(response.content)
            ok = isinstance(shape.get("code"), str) and isinstance(shape.get("detail"), str)
        if not ok:
            wrong.append((case.category, case.name, response.status_code, response.content[:200]))
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert not wrong, wrong[:20]
    assert not Update.objects.exists()
    assert run.versions.order_by("-number").first().sha256 == model_before
    assert grown < MEMORY_BOUND
