"""The dashboard: login by cookie, the learner page, its images and JSON, rollback; and a real browser."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from service.routes.dashboard import COOKIE, csrf_token
from tests.service.live import live_server, train_learner
from tests.service.support import ADMIN, auth


@pytest.fixture(scope="module")
def learner(client: TestClient) -> str:
    """Two versions: digits {0,1} then {2,3}, each with a holdout."""
    name = f"dash-{uuid.uuid4().hex[:6]}"
    train_learner(client, name, [[0, 1], [2, 3]])
    return name


@pytest.fixture
def browser_client(client: TestClient) -> Iterator[TestClient]:
    """A second client on the same app with its own cookie jar (the session client stays clean)."""
    with TestClient(client.app) as c:
        yield c


def key_with(client: TestClient, *scopes: str) -> dict:
    r = client.post(
        "/v1/keys", json={"name": f"dash-{'-'.join(scopes)}", "scopes": list(scopes)}, headers=auth()
    )
    assert r.status_code == 201, r.text
    return r.json()


def sign_in(c: TestClient, key: str, next_url: str = "/dashboard") -> httpx.Response:
    return c.post("/dashboard/login", data={"key": key, "next": next_url}, follow_redirects=False)


def test_dashboard_without_key_shows_login_form_not_data(browser_client: TestClient, learner: str):
    for path in ("/dashboard", f"/dashboard/{learner}"):
        r = browser_client.get(path)
        assert r.status_code == 401 and 'id="login"' in r.text
        assert 'id="tasks"' not in r.text and 'id="learners"' not in r.text and "sha256" not in r.text
    for path in (f"/dashboard/{learner}/plots/accuracy.png", f"/dashboard/{learner}/versions/1/samples.png"):
        r = browser_client.get(path)
        assert r.status_code == 401 and "sign in" in r.json()["detail"]
    # an Authorization header alone does not open the dashboard: only the cookie does
    assert browser_client.get(f"/dashboard/{learner}", headers=auth()).status_code == 401


def test_dashboard_wrong_key_is_refused_without_cookie(browser_client: TestClient):
    r = sign_in(browser_client, "dgm_not-a-key")
    assert (
        r.status_code == 401
        and "unknown or revoked" in r.text
        and COOKIE not in r.headers.get("set-cookie", "")
    )


def test_dashboard_login_sets_a_strict_httponly_cookie_and_shows_the_learner(
    browser_client: TestClient, learner: str
):
    r = sign_in(browser_client, ADMIN, f"/dashboard/{learner}")
    assert r.status_code == 303 and r.headers["location"] == f"/dashboard/{learner}"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    listing = browser_client.get("/dashboard")
    assert listing.status_code == 200 and f'href="/dashboard/{learner}"' in listing.text
    page = browser_client.get(f"/dashboard/{learner}")
    assert page.status_code == 200
    for marker in ('id="tasks"', 'id="accuracy"', 'id="versions"', 'id="plot-capacity"', 'id="activate-1"'):
        assert marker in page.text, marker
    assert "0 (18), 1 (18)" in page.text  # 24 per class minus the 25% holdout
    assert len(re.findall(r'<tr data-version="\d+">', page.text)) == 2
    for src in re.findall(r'src="(/dashboard/[^"]+\.png)"', page.text):
        img = browser_client.get(src)
        assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n", src


def test_dashboard_login_posted_from_another_site_is_refused(browser_client: TestClient):
    """Login CSRF: a form on another origin must not sign the browser in under the attacker's key."""
    r = browser_client.post(
        "/dashboard/login", data={"key": ADMIN, "next": "/dashboard"},
        headers={"origin": "https://evil.example"}, follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 403 and "another site" in r.json()["detail"]
    assert COOKIE not in r.headers.get("set-cookie", "")
    r = browser_client.post(
        "/dashboard/login", data={"key": ADMIN, "next": "/dashboard"},
        headers={"origin": "null", "sec-fetch-site": "cross-site"}, follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 403 and COOKIE not in r.headers.get("set-cookie", "")


def test_dashboard_open_redirect_is_refused(browser_client: TestClient):
    r = sign_in(browser_client, ADMIN, "https://evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard"


def test_dashboard_unknown_learner_is_404_naming_it(browser_client: TestClient):
    sign_in(browser_client, ADMIN)
    r = browser_client.get("/dashboard/no-such-learner")
    assert r.status_code == 404 and "'no-such-learner'" in r.json()["detail"]


def test_dashboard_rollback_needs_admin_and_the_csrf_token(
    client: TestClient, browser_client: TestClient, learner: str
):
    reader = key_with(client, "predict")
    sign_in(browser_client, reader["key"])
    page = browser_client.get(f"/dashboard/{learner}").text
    assert 'class="activate"' not in page and "needs a key with the admin scope" in page
    r = browser_client.post(
        f"/dashboard/{learner}/versions/1/activate", headers={"X-CSRF-Token": csrf_token(reader["key"])}
    )
    assert r.status_code == 403 and "admin" in r.json()["detail"]

    sign_in(browser_client, ADMIN)
    r = browser_client.post(f"/dashboard/{learner}/versions/1/activate")
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    assert client.get(f"/v1/learners/{learner}", headers=auth()).json()["active_version"] == 2

    token = re.search(
        r'name="csrf-token" content="([0-9a-f]+)"', browser_client.get(f"/dashboard/{learner}").text
    )
    r = browser_client.post(f"/dashboard/{learner}/versions/1/activate", headers={"X-CSRF-Token": token[1]})
    assert r.status_code == 200 and r.json()["active"] is True
    assert client.get(f"/v1/learners/{learner}", headers=auth()).json()["active_version"] == 1
    r = browser_client.post(f"/dashboard/{learner}/versions/2/activate", headers={"X-CSRF-Token": token[1]})
    assert r.status_code == 200
    assert client.get(f"/v1/learners/{learner}", headers=auth()).json()["active_version"] == 2


def test_dashboard_revoking_the_key_signs_the_browser_out(
    client: TestClient, browser_client: TestClient, learner: str
):
    key = key_with(client, "train")
    sign_in(browser_client, key["key"])
    assert browser_client.get(f"/dashboard/{learner}").status_code == 200
    assert client.delete(f"/v1/keys/{key['id']}", headers=auth()).status_code == 200
    r = browser_client.get(f"/dashboard/{learner}")
    assert r.status_code == 401 and 'id="login"' in r.text


def test_dashboard_job_json_is_scoped_to_its_learner(
    client: TestClient, browser_client: TestClient, learner: str, trained: str
):
    sign_in(browser_client, ADMIN)
    job = client.get(f"/v1/learners/{learner}/history", headers=auth()).json()["jobs"][0]
    r = browser_client.get(f"/dashboard/{learner}/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["state"] == "succeeded" and r.json()["id"] == job["id"]
    r = browser_client.get(f"/dashboard/{trained}/jobs/{job['id']}")
    assert r.status_code == 404 and trained in r.json()["detail"]


def test_dashboard_empty_learner_and_learner_without_holdout(
    browser_client: TestClient, make_learner, trained: str
):
    sign_in(browser_client, ADMIN)
    empty = browser_client.get(f"/dashboard/{make_learner()}")
    assert empty.status_code == 200 and "No task uploaded yet" in empty.text and "<img" not in empty.text
    page = browser_client.get(f"/dashboard/{trained}")
    assert page.status_code == 200 and "No task kept a holdout" in page.text
    assert 'id="plot-accuracy"' not in page.text and 'id="plot-capacity"' in page.text


def test_dashboard_sign_out_clears_the_cookie(browser_client: TestClient, learner: str):
    sign_in(browser_client, ADMIN)
    r = browser_client.post("/dashboard/logout", follow_redirects=False)
    assert r.status_code == 303 and COOKIE in r.headers["set-cookie"]
    assert browser_client.get(f"/dashboard/{learner}").status_code == 401


# ----- a real browser -------------------------------------------------------------------------
LOADED = "const e = document.getElementById(arguments[0]); return e.complete && e.naturalWidth > 0;"
ACTIVE = "const e = document.getElementById('active-version'); return e ? e.textContent.trim() : null;"
HAVE_CHROMIUM = shutil.which("chromium") is not None and shutil.which("chromedriver") is not None


@pytest.fixture
def chrome() -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1800")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


@pytest.mark.skipif(
    not HAVE_CHROMIUM,
    reason="the dashboard in a real browser: chromium and chromium-driver are not installed "
    "(apt-get install -y chromium chromium-driver; .ci/run installs them)",
)
def test_dashboard_in_chromium_plots_rollback_and_live_progress(
    client: TestClient, pg_settings: Settings, learner: str, chrome
):
    """A live server whose uploads go to a queue no worker reads, so a job waits until the test sends it
    on: the page shows it live, then reloads by itself when the worker has trained it."""
    import redis
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from core.queue import enqueue_train
    from tests.service.support import digits, npz_bytes

    parked = pg_settings.model_copy(update={"queue": f"{pg_settings.queue}-parked"})
    wait = WebDriverWait(chrome, 60)
    try:
        with live_server(parked) as url:
            chrome.get(f"{url}/dashboard/{learner}")
            chrome.find_element(By.ID, "key").send_keys(ADMIN)
            chrome.find_element(By.ID, "sign-in").click()
            wait.until(lambda d: d.find_elements(By.ID, "accuracy"))
            for img in ("plot-accuracy", "plot-at", "plot-capacity"):
                wait.until(lambda d, i=img: d.execute_script(LOADED, i))
            rows = chrome.find_elements(By.CSS_SELECTOR, "#accuracy tr")
            assert [r.find_element(By.TAG_NAME, "td").text for r in rows[1:]] == ["v1", "v2"]

            chrome.find_element(By.ID, "activate-1").click()
            wait.until(lambda d: d.execute_script(ACTIVE) == "1")  # the page reloads after the click
            assert client.get(f"/v1/learners/{learner}", headers=auth()).json()["active_version"] == 1

            x, y = digits([4, 5])
            r = httpx.post(
                f"{url}/v1/learners/{learner}/tasks", headers=auth(), data={"holdout": "0.25"},
                files={"file": ("t.npz", npz_bytes(x=x, y=y))},
            )  # fmt: skip
            assert r.status_code == 202, r.text
            job_id = r.json()["job"]["id"]
            chrome.get(f"{url}/dashboard/{learner}")
            row = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, f'tr.job[data-job="{job_id}"]'))
            assert row.find_element(By.CLASS_NAME, "state").text == "queued"

            enqueue_train(client.app.state.celery, pg_settings, job_id)  # the worker's queue
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-version="3"]'))
            assert not chrome.find_elements(By.CSS_SELECTOR, "tr.job")
            assert chrome.execute_script(ACTIVE) == "3"
    finally:
        redis.Redis.from_url(pg_settings.broker_url).delete(parked.queue)
    versions = client.get(f"/v1/learners/{learner}/versions", headers=auth()).json()
    assert [(v["number"], v["trained_from"], v["active"]) for v in versions] == [
        (1, None, False), (2, 1, False), (3, 1, True),
    ]  # fmt: skip
