"""Prometheus /metrics: counters move by exactly what the requests did; DB figures match the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from service.app import create_app
from tests.service.support import ADMIN, TINY, auth, digits, npz_bytes, wait_job


def scrape(client: TestClient) -> dict[tuple[str, frozenset], float]:
    """Every sample of GET /metrics, keyed by (sample name, labels)."""
    r = client.get("/metrics", headers=auth(ADMIN))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture
def two_versions(client: TestClient) -> Iterator[str]:
    name = f"m-{uuid.uuid4().hex[:6]}"
    assert client.post("/v1/learners", json={**TINY, "name": name}, headers=auth()).status_code == 201
    for classes in ([0, 1], [2, 3]):
        x, y = digits(classes)
        r = client.post(
            f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))}, headers=auth()
        )
        assert wait_job(client, r.json()["job"]["id"])["state"] == "succeeded"
    yield name


def test_metrics_requests_by_route_template_and_status(client: TestClient, trained: str):
    before = scrape(client)
    for _ in range(3):
        assert client.get(f"/v1/learners/{trained}", headers=auth()).status_code == 200
    assert client.get("/v1/learners/no-such-learner", headers=auth()).status_code == 404
    assert client.get("/v1/learners/x").status_code == 401
    assert client.get(f"/no/such/path/{uuid.uuid4().hex}").status_code == 404
    after = scrape(client)
    route = {"method": "GET", "route": "/v1/learners/{name}"}
    assert delta(before, after, "dgm_http_requests_total", **route, status="200") == 3
    assert delta(before, after, "dgm_http_requests_total", **route, status="404") == 1
    assert delta(before, after, "dgm_http_requests_total", **route, status="401") == 1
    assert (
        delta(before, after, "dgm_http_requests_total", method="GET", route="<unmatched>", status="404") == 1
    )
    assert delta(before, after, "dgm_http_request_duration_seconds_count", **route, status="200") == 3
    assert delta(before, after, "dgm_http_request_duration_seconds_sum", **route, status="200") > 0
    assert (
        delta(before, after, "dgm_http_request_duration_seconds_bucket", **route, status="200", le="+Inf")
        == 3
    )
    assert delta(before, after, "dgm_http_requests_total", method="GET", route="/metrics", status="200") == 1
    assert not any(trained in dict(labels).get("route", "") for _, labels in after)  # templates, not paths


def test_metrics_predictions_per_learner_and_version_and_cache(client: TestClient, trained: str):
    x, _ = digits([0, 1], per_class=3, offset=90)
    predict = f"/v1/learners/{trained}/predict"
    assert client.post(predict, json={"images": x[:1].tolist()}, headers=auth()).status_code == 200  # warm
    before = scrape(client)
    assert client.post(predict, json={"images": x.tolist()}, headers=auth()).status_code == 200  # 6 images
    infer = {
        "inputs": [
            {"name": "images", "datatype": "UINT8", "shape": [4, 8, 8], "data": x[:4].ravel().tolist()}
        ]
    }
    assert client.post(f"/v2/models/{trained}/infer", json=infer, headers=auth()).status_code == 200
    bad = {"inputs": [{**infer["inputs"][0], "datatype": "INT8"}]}
    assert client.post(f"/v2/models/{trained}/infer", json=bad, headers=auth()).status_code == 400
    after = scrape(client)
    assert (
        delta(before, after, "dgm_predictions_total", learner=trained, version="1") == 10
    )  # a refused call adds 0
    assert delta(before, after, "dgm_classifier_cache_hits_total") == 2
    assert delta(before, after, "dgm_classifier_cache_misses_total") == 0
    v2 = {"method": "POST", "route": "/v2/models/{name}/infer"}
    assert delta(before, after, "dgm_http_requests_total", **v2, status="200") == 1
    assert delta(before, after, "dgm_http_requests_total", **v2, status="400") == 1


def test_metrics_cache_evictions_and_size(pg_settings: Settings, client: TestClient, two_versions: str):
    """A cache of one: alternating versions loads, and evicts, every time."""
    settings = pg_settings.model_copy(update={"classifier_cache_size": 1})
    x, _ = digits([0], per_class=1)
    with TestClient(create_app(settings)) as c:
        for version in (1, 2, 1, 1):
            body = {"images": x.tolist(), "version": version}
            assert (
                c.post(f"/v1/learners/{two_versions}/predict", json=body, headers=auth()).status_code == 200
            )
        m = scrape(c)
    assert value(m, "dgm_classifier_cache_misses_total") == 3
    assert value(m, "dgm_classifier_cache_hits_total") == 1
    assert value(m, "dgm_classifier_cache_evictions_total") == 2
    assert (value(m, "dgm_classifier_cache_size"), value(m, "dgm_classifier_cache_capacity")) == (1, 1)
    assert value(m, "dgm_predictions_total", learner=two_versions, version="1") == 3
    assert value(m, "dgm_predictions_total", learner=two_versions, version="2") == 1


def test_metrics_jobs_and_step_time_come_from_the_database(client: TestClient, make_learner):
    name = make_learner()
    before = scrape(client)
    x, y = digits([4, 5])
    r = client.post(
        f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))}, headers=auth()
    )
    job = wait_job(client, r.json()["job"]["id"])
    assert job["state"] == "succeeded"
    after = scrape(client)
    assert delta(before, after, "dgm_jobs", state="succeeded") == 1
    assert value(after, "dgm_jobs", state="queued") == value(after, "dgm_queue_depth_jobs")
    assert value(after, "dgm_database_up") == 1
    progress = job["progress"]
    assert value(after, "dgm_training_last_job_mean_step_seconds", learner=name) == progress["step_s"]
    assert progress["step_s"] == pytest.approx(progress["elapsed_s"] / progress["step"], rel=0.01, abs=0.005)
    assert value(after, "dgm_training_last_job_seconds", learner=name) == progress["elapsed_s"]


def test_metrics_queue_depth_counts_database_and_redis(
    pg_settings: Settings, client: TestClient, make_learner
):
    """A queue no worker listens to: the job stays queued, its message stays in the Redis list."""
    settings = pg_settings.model_copy(update={"queue": f"dgm-nobody-{uuid.uuid4().hex[:8]}"})
    name = make_learner()
    x, y = digits([6, 7])
    with TestClient(create_app(settings)) as c:
        before = scrape(c)
        r = c.post(
            f"/v1/learners/{name}/tasks", files={"file": ("t.npz", npz_bytes(x=x, y=y))}, headers=auth()
        )
        assert r.status_code == 202, r.text
        after = scrape(c)
        assert delta(before, after, "dgm_queue_depth_jobs") == 1
        assert delta(before, after, "dgm_jobs", state="queued") == 1
        assert (value(before, "dgm_broker_queue_messages"), value(after, "dgm_broker_queue_messages")) == (
            0,
            1,
        )
        assert c.post(f"/v1/jobs/{r.json()['job']['id']}/cancel", headers=auth()).status_code == 200
        done = scrape(c)
        assert delta(before, done, "dgm_queue_depth_jobs") == 0
        assert delta(before, done, "dgm_jobs", state="cancelled") == 1
    redis.Redis.from_url(settings.broker_url).delete(settings.queue)


def test_metrics_need_an_admin_key_unless_made_public(pg_settings: Settings):
    with TestClient(create_app(pg_settings)) as c:
        assert c.get("/metrics").status_code == 401
        r = c.get("/metrics", headers=auth(ADMIN))
        assert r.status_code == 200 and "dgm_jobs" in r.text
    with TestClient(create_app(pg_settings.model_copy(update={"metrics_public": True}))) as c:
        r = c.get("/metrics")
        assert r.status_code == 200 and "dgm_jobs" in r.text


def test_metrics_method_label_cannot_be_grown_by_clients(client: TestClient):
    """Any method name reaches the app (h11 accepts them); unknown ones share one label value."""
    for method in ("ZZ1", "ZZ2", "BREW"):
        assert client.request(method, "/no-such-route").status_code in (404, 405)
    samples = scrape(client)
    labels = {dict(labels).get("method") for name, labels in samples if name == "dgm_http_requests_total"}
    assert "OTHER" in labels and not labels & {"ZZ1", "ZZ2", "BREW"}
