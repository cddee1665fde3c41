"""The embedded default, exactly as `dgm serve` runs it: SQLite, filesystem broker, worker subprocess."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.service.support import ADMIN, ROOT, TINY, auth, digits, npz_bytes, png_bytes, png_zip, wait_job


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), DGM_DATA_DIR=str(tmp_path / "var"), DGM_ADMIN_KEY=ADMIN)
    env.update(
        DGM_TORCH_THREADS="1", DGM_DEVICE="cpu", DGM_PROGRESS_INTERVAL_S="0.2", DGM_REQUEUE_COUNTDOWN_S="0.5"
    )
    for key in ("DGM_DATABASE_URL", "DGM_BROKER_URL", "DGM_ARTIFACT_DIR", "DGM_QUEUE"):
        env.pop(key, None)
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "serve", "--port", str(port)], env=env, cwd=tmp_path,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError((tmp_path / "serve.log").read_text())
    yield url, env, tmp_path
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=40)


def test_embedded_serve_trains_predicts_and_rolls_back(served):
    url, env, tmp = served
    with httpx.Client(base_url=url, headers=auth(), timeout=60) as c:
        assert c.post("/v1/learners", json={**TINY, "name": "emb"}).status_code == 201
        x1, y1 = digits([0, 1])
        x2, y2 = digits([2, 3])
        r1 = c.post(
            "/v1/learners/emb/tasks",
            files={"file": ("a.npz", npz_bytes(x=x1, y=y1))},
            data={"holdout": "0.2"},
        )
        r2 = c.post("/v1/learners/emb/tasks", files={"file": ("b.zip", png_zip(x2, y2, prefix=""))})
        assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)
        assert wait_job(c, r1.json()["job"]["id"])["state"] == "succeeded"
        assert wait_job(c, r2.json()["job"]["id"])["state"] == "succeeded"

        files = [("files", ("x.png", png_bytes(x2[0])))]
        out = c.post("/v1/learners/emb/predict", files=files, data={"top_k": "4"}).json()
        assert out["version"] == 2 and out["classes"] == ["0", "1", "2", "3"]
        history = c.get("/v1/learners/emb/history").json()
        assert [v["number"] for v in history["versions"]] == [1, 2]
        assert history["accuracy_matrix"]["rows"][1]["accuracy"][0] is not None

        assert c.post("/v1/learners/emb/versions/1/activate").status_code == 200
        out = c.post("/v1/learners/emb/predict", json={"images": x2[:2].tolist()}).json()
        assert out["version"] == 1 and {p["label"] for p in out["predictions"]} <= {"0", "1"}

    # the same install drives the CLI client
    cli = [sys.executable, "-m", "cli"]
    cenv = dict(env, DGM_URL=url, DGM_KEY=ADMIN)
    (tmp / "t.npz").write_bytes(npz_bytes(x=digits([5])[0], y=digits([5])[1]))
    done = subprocess.run(
        [*cli, "upload", "emb", str(tmp / "t.npz"), "--wait"], env=cenv, capture_output=True, text=True
    )
    assert done.returncode == 0 and "succeeded" in done.stdout, done.stdout + done.stderr
    table = subprocess.run(
        [*cli, "history", "emb"], env=cenv, capture_output=True, text=True, check=True
    ).stdout
    assert "active version 3" in table and "trained" in table
    (tmp / "d.png").write_bytes(png_bytes(x2[0]))
    pred = subprocess.run(
        [*cli, "predict", "emb", str(tmp / "d.png")], env=cenv, capture_output=True, text=True
    )
    assert pred.returncode == 0 and "version 3" in pred.stdout, pred.stderr
    assert (tmp / "var" / "dgm.db").exists() and (tmp / "var" / "artifacts" / "learners").is_dir()


def test_cli_help_is_fast_and_lists_commands():
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "cli", "--help"], capture_output=True, text=True, check=True)
    assert time.monotonic() - started < 5
    for cmd in ("serve", "worker", "migrate", "learners", "upload", "predict", "history", "keys", "bench"):
        assert cmd in out.stdout
    probe = "import cli.main, sys; cli.main.build_parser(); print('torch' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT).stdout.strip()
        == "False"
    )


NO_COMPOSE = pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="the compose files were not parsed: docker-compose is not installed "
    "(apt-get install -y docker-compose; .ci/run installs it)",
)
GPU = ["-f", "docker-compose.yml", "-f", "docker-compose.gpu.yml"]


def compose_config(*files: str) -> dict:
    """docker-compose (v1, no engine needed) validates the files, then prints the merged configuration."""
    import yaml

    subprocess.run(["docker-compose", *files, "config", "-q"], cwd=ROOT, check=True, capture_output=True)
    out = subprocess.run(["docker-compose", *files, "config"], cwd=ROOT, check=True, capture_output=True)
    return yaml.safe_load(out.stdout)["services"]


@NO_COMPOSE
def test_compose_default_is_the_cpu_stack_the_readme_promises():
    """`docker compose up` on a laptop: CPU torch in every image, no GPU reserved."""
    services = compose_config()
    assert set(services) == {"api", "worker", "postgres", "redis"}
    assert all("healthcheck" in svc for svc in services.values())
    for name in ("api", "worker"):  # same database, broker and artifact volume, from the environment
        svc = services[name]
        env, volumes = svc["environment"], svc["volumes"]
        assert env["DGM_DATABASE_URL"].startswith("postgresql+psycopg2://")
        assert env["DGM_BROKER_URL"].startswith("redis://")
        assert any(v.startswith("artifacts:") for v in volumes)
        assert svc["image"] == "dgm-serve:cpu" and "deploy" not in svc
        assert svc["build"]["args"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert services["worker"]["command"] == ["dgm", "worker"]


@NO_COMPOSE
def test_compose_gpu_override_gives_workers_cuda_torch_and_a_gpu_each():
    services = compose_config(*GPU)
    worker, api = services["worker"], services["api"]
    assert worker["image"] == "dgm-serve:gpu"
    assert worker["build"]["args"]["TORCH_INDEX_URL"] == "https://pypi.org/simple"
    gpu = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["count"] == 1 and "gpu" in gpu["capabilities"]
    assert worker["environment"]["DGM_DEVICE"] == "cuda"
    assert worker["environment"]["DGM_BROKER_URL"].startswith("redis://")  # the base settings still apply
    assert api["image"] == "dgm-serve:cpu" and "deploy" not in api


def test_dockerfile_declares_every_build_argument_compose_passes():
    import yaml

    declared = {line.split()[1].split("=")[0] for line in (ROOT / "Dockerfile").read_text().splitlines()
                if line.startswith("ARG ")}  # fmt: skip
    for name in ("docker-compose.yml", "docker-compose.gpu.yml"):
        for svc in yaml.safe_load((ROOT / name).read_text())["services"].values():
            build = svc.get("build")
            if isinstance(build, dict):
                assert set(build.get("args", {})) <= declared, (name, build)
