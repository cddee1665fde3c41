"""`dgm` command line. Imports are lazy so `dgm --help` answers at once.

Server side: `dgm serve` (embedded: API + one worker + SQLite + filesystem broker), `dgm worker`,
`dgm migrate`. Client side (--url/--key or DGM_URL/DGM_KEY): learners, upload, predict, history, keys.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "run"):
        build_parser().print_help()
        return 2
    return args.run(args) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dgm", description="Continual image classification service (DGM).")
    sub = p.add_subparsers(title="commands")

    s = sub.add_parser("serve", help="API + one worker on this machine (embedded default)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--no-worker", action="store_true", help="API only (workers run elsewhere)")
    s.set_defaults(run=cmd_serve)

    s = sub.add_parser("worker", help="a training worker for the configured broker")
    s.add_argument("--concurrency", type=int, default=1)
    s.add_argument("--loglevel", default="INFO")
    s.set_defaults(run=cmd_worker)

    s = sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    s.add_argument("--revision", default="head")
    s.set_defaults(run=cmd_migrate)

    learners = sub.add_parser("learners", help="create or list learners").add_subparsers(
        title="learner commands"
    )
    s = learners.add_parser("create", help="create a learner")
    s.add_argument("name")
    s.add_argument("--shape", required=True, help="channels,height,width e.g. 1,28,28")
    s.add_argument("--variant", default="dgmw", choices=["dgmw", "dgma"])
    s.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyper-parameter override")
    _client(s, run=cmd_learners_create)
    _client(learners.add_parser("list", help="list learners"), run=cmd_learners_list)

    s = sub.add_parser("upload", help="upload a task (.npz or .zip of class folders)")
    s.add_argument("learner")
    s.add_argument("file", type=Path)
    s.add_argument("--holdout", type=float, default=0.0)
    s.add_argument("--wait", action="store_true", help="follow the job with a progress bar")
    _client(s, run=cmd_upload)

    s = sub.add_parser("predict", help="classify image files (PNG/JPEG)")
    s.add_argument("learner")
    s.add_argument("images", nargs="+", type=Path)
    s.add_argument("--top-k", type=int, default=1)
    s.add_argument("--version", type=int)
    _client(s, run=cmd_predict)

    s = sub.add_parser("history", help="tasks, versions and the accuracy matrix of a learner")
    s.add_argument("learner")
    s.add_argument("--json", action="store_true")
    _client(s, run=cmd_history)

    keys = sub.add_parser("keys", help="create or revoke API keys").add_subparsers(title="key commands")
    s = keys.add_parser("create", help="create a key (printed once)")
    s.add_argument("name")
    s.add_argument("--scopes", default="predict", help="comma-separated: predict,train,admin")
    s.add_argument("--local", action="store_true", help="write to the configured database directly")
    _client(s, run=cmd_keys_create)
    s = keys.add_parser("revoke", help="revoke a key by id")
    s.add_argument("id", type=int)
    s.add_argument("--local", action="store_true", help="write to the configured database directly")
    _client(s, run=cmd_keys_revoke)

    s = sub.add_parser("bench", help="benchmarks: accuracy | predict")
    s.add_argument("which", choices=["accuracy", "predict"])
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(run=cmd_bench)
    return p


def _client(p: argparse.ArgumentParser, run: Any) -> None:
    p.add_argument("--url", default=os.environ.get("DGM_URL", "http://127.0.0.1:8000"))
    p.add_argument("--key", default=os.environ.get("DGM_KEY") or os.environ.get("DGM_ADMIN_KEY"))
    p.set_defaults(run=run)


# ----- server side ---------------------------------------------------------------------------
def worker_command(settings: Any, concurrency: int = 1, loglevel: str = "INFO") -> list[str]:
    pool = ["--pool=solo"] if concurrency == 1 else ["--pool=prefork", f"--concurrency={concurrency}"]
    return [
        sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", settings.queue, *pool,
        "--without-gossip", "--without-mingle", f"--loglevel={loglevel}",
    ]  # fmt: skip


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def cmd_migrate(args: argparse.Namespace) -> int:
    from core.db import upgrade
    from core.settings import get_settings

    settings = get_settings()
    upgrade(settings.database_url, args.revision)
    print(f"database at {args.revision}: {settings.database_url}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    import subprocess

    from core.settings import get_settings

    return subprocess.call(worker_command(get_settings(), args.concurrency, args.loglevel), env=child_env())


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM if `dgm serve` dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def cmd_serve(args: argparse.Namespace) -> int:
    import subprocess

    import uvicorn

    from core.db import upgrade
    from core.settings import get_settings
    from service.app import create_app

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.artifacts.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    if not settings.admin_key:
        print("note: DGM_ADMIN_KEY is not set; every route but /healthz, /readyz and /docs will answer 401")
    worker = None
    if not args.no_worker:
        worker = subprocess.Popen(worker_command(settings), env=child_env(), preexec_fn=_die_with_parent)
    # uvicorn re-raises SIGTERM after its shutdown; turn it into SystemExit so `finally` stops the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    log_config: Any = uvicorn.config.LOGGING_CONFIG
    if settings.log_json:  # the worker child reads DGM_LOG_JSON itself (worker/app.py)
        from core.logs import configure_logging

        configure_logging(json_lines=True)
        log_config = None  # uvicorn's loggers propagate to the root's JSON handler
    try:
        uvicorn.run(
            create_app(settings), host=args.host, port=args.port, log_level="info", log_config=log_config
        )
    finally:
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    return 0


# ----- client side ---------------------------------------------------------------------------
class ClientError(SystemExit):
    pass


def request(args: argparse.Namespace, method: str, path: str, **kw: Any) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        r = httpx.request(method, args.url.rstrip("/") + path, headers=headers, timeout=120, **kw)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {args.url}: {exc}") from exc
    if r.status_code >= 400:
        try:
            body = r.json()
            raise ClientError(f"{r.status_code} {body.get('error')}: {body.get('detail')}")
        except ValueError:
            raise ClientError(f"{r.status_code}: {r.text[:500]}") from None
    return r.json()


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def cmd_learners_create(args: argparse.Namespace) -> int:
    shape = [int(v) for v in args.shape.split(",")]
    overrides = {k: _parse_value(v) for k, _, v in (kv.partition("=") for kv in args.set)}
    body = {"name": args.name, "image_shape": shape, "variant": args.variant, "preset": args.preset}
    out = request(args, "POST", "/v1/learners", json={**body, "hyperparameters": overrides})
    print(
        f"created learner {out['name']} ({out['variant']}, preset {out['preset']}, "
        f"shape {out['image_shape']})"
    )
    return 0


def cmd_learners_list(args: argparse.Namespace) -> int:
    rows = request(args, "GET", "/v1/learners")
    print(f"{'name':20} {'variant':7} {'shape':12} {'version':>7} {'classes':>7}  status")
    for r in rows:
        shape = "x".join(map(str, r["image_shape"]))
        version = r["active_version"] or "-"
        print(
            f"{r['name']:20} {r['variant']:7} {shape:12} {version:>7} {len(r['classes']):>7}  {r['status']}"
        )
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    with open(args.file, "rb") as f:
        out = request(
            args, "POST", f"/v1/learners/{args.learner}/tasks",
            files={"file": (args.file.name, f)}, data={"holdout": str(args.holdout)},
        )  # fmt: skip
    task, job = out["task"], out["job"]
    print(
        f"task #{task['ordinal']} accepted: classes {task['classes']}, {task['n_train']} training images; "
        f"job {job['id']}"
    )
    if args.wait:
        job = follow_job(args, job["id"])
        print(f"job {job['id']} {job['state']}" + (f": {job['error']}" if job.get("error") else ""))
        return 0 if job["state"] == "succeeded" else 1
    return 0


def follow_job(args: argparse.Namespace, job_id: int, poll: float = 1.0) -> dict:
    from tqdm import tqdm

    with tqdm(total=1, unit="step", desc=f"job {job_id}") as bar:
        while True:
            job = request(args, "GET", f"/v1/jobs/{job_id}")
            p = job.get("progress") or {}
            if p:
                bar.total = p["total"]
                bar.n = p["step"]
                bar.set_postfix({k: f"{v:.3g}" for k, v in list(p.get("losses", {}).items())[:3]})
            bar.set_description(f"job {job_id} {job['state']}")
            bar.refresh()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(poll)


def cmd_predict(args: argparse.Namespace) -> int:
    files = [("files", (p.name, p.read_bytes())) for p in args.images]
    data = {"top_k": str(args.top_k)} | ({"version": str(args.version)} if args.version else {})
    out = request(args, "POST", f"/v1/learners/{args.learner}/predict", files=files, data=data)
    for path, pred in zip(args.images, out["predictions"], strict=True):
        others = ", ".join(f"{lab} {s:.3f}" for lab, s in pred["top_k"][1:])
        print(f"{path}: {pred['label']} ({pred['score']:.3f})" + (f"  [{others}]" if others else ""))
    print(f"version {out['version']}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    h = request(args, "GET", f"/v1/learners/{args.learner}/history")
    if args.json:
        print(json.dumps(h, indent=2))
        return 0
    print(f"learner {h['learner']['name']}: active version {h['learner']['active_version']}")
    print(f"{'task':>4} {'state':10} {'classes':30} {'train':>6} {'holdout':>7}")
    for t in h["tasks"]:
        print(
            f"{t['ordinal']:>4} {t['state']:10} {','.join(t['classes'])[:30]:30} "
            f"{t['n_train']:>6} {t['n_holdout']:>7}"
        )
    m = h["accuracy_matrix"]
    print(
        "\n"
        + f"{'version':>7} {'params':>8} {'added':>8} {'secs':>6}  "
        + " ".join(f"T{o:<5}" for o in m["tasks"])
    )
    for v, row in zip(h["versions"], m["rows"], strict=True):
        accs = " ".join("  -   " if a is None else f"{a:.3f} " for a in row["accuracy"])
        mark = "*" if v["active"] else " "
        added = sum(v["units_added"].values())
        print(f"{v['number']:>6}{mark} {v['parameters']:>8} {added:>8} {v['train_seconds']:>6.1f}  {accs}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    if args.local:
        from core.db import session_scope
        from core.keys import create_key
        from core.settings import get_settings

        with session_scope(get_settings()) as s:
            row, key = create_key(s, args.name, scopes)
            key_id = row.id
    else:
        out = request(args, "POST", "/v1/keys", json={"name": args.name, "scopes": scopes})
        key, key_id = out["key"], out["id"]
    print(f"key {key_id} ({','.join(scopes)}): {key}\nstore it now; it is not shown again")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    if args.local:
        from core.db import session_scope
        from core.orm import ApiKey
        from core.settings import get_settings

        with session_scope(get_settings()) as s:
            row = s.get(ApiKey, args.id)
            if row is None:
                raise ClientError(f"no key {args.id}")
            row.revoked = True
    else:
        request(args, "DELETE", f"/v1/keys/{args.id}")
    print(f"key {args.id} revoked")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    rest = [a for a in args.rest if a != "--"]
    if args.which == "accuracy":
        from benchmarks.accuracy import main as bench_main
    else:
        from benchmarks.predict_latency import main as bench_main
    bench_main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
