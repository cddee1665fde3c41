"""`dgm` command line. Imports are lazy so `dgm --help` answers at once.

Server side: `dgm serve` (embedded: API + one worker + SQLite + filesystem broker), `dgm worker`,
`dgm migrate`. Client side (--url/--key or DGM_URL/DGM_KEY): learners, upload, tasks, jobs, versions,
predict, history, samples, plots, keys; `--json` prints the server's JSON for scripts.

Exit codes: 0 ok; 1 the server failed (5xx) or the job failed or was cancelled; 2 usage error (bad
arguments, missing local file); 3 the API refused the request (any 4xx: unknown learner, job or version,
bad input, conflict, missing or weak key); 4 the server could not be reached. Errors print the server's
`detail` to stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cli.client import (
    EXIT_OK,
    EXIT_USAGE,
    ClientError,
    cmd_forget,
    cmd_history,
    cmd_jobs_cancel,
    cmd_jobs_retry,
    cmd_jobs_show,
    cmd_jobs_wait,
    cmd_keys_create,
    cmd_keys_list,
    cmd_keys_revoke,
    cmd_learners_create,
    cmd_learners_delete,
    cmd_learners_list,
    cmd_learners_show,
    cmd_learners_update,
    cmd_plots,
    cmd_predict,
    cmd_purge,
    cmd_rollout_end,
    cmd_rollout_start,
    cmd_samples,
    cmd_sessions_list,
    cmd_sessions_revoke,
    cmd_tasks,
    cmd_upload,
    cmd_versions_activate,
    cmd_versions_list,
)
from cli.server import cmd_bench, cmd_migrate, cmd_serve, cmd_worker


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "run"):
        build_parser().print_help()
        return EXIT_USAGE
    try:
        return args.run(args) or EXIT_OK
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code


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

    add_learner_commands(sub)
    add_forget_commands(sub)
    add_task_commands(sub)
    add_job_commands(sub)
    add_version_commands(sub)
    add_rollout_commands(sub)
    add_predict_commands(sub)
    add_key_commands(sub)

    s = sub.add_parser("bench", help="benchmarks: accuracy | predict")
    s.add_argument("which", choices=["accuracy", "predict"])
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(run=cmd_bench)
    return p


def _client(p: argparse.ArgumentParser, run: Any, json_out: bool = True) -> None:
    p.add_argument("--url", default=os.environ.get("DGM_URL", "http://127.0.0.1:8000"))
    p.add_argument("--key", default=os.environ.get("DGM_KEY") or os.environ.get("DGM_ADMIN_KEY"))
    if json_out:
        p.add_argument("--json", action="store_true", help="print the server's JSON (for scripts)")
    p.set_defaults(run=run)


def add_learner_commands(sub: Any) -> None:
    learners = sub.add_parser("learners", help="create, list or show learners").add_subparsers(
        title="learner commands"
    )
    s = learners.add_parser("create", help="create a learner")
    s.add_argument("name")
    s.add_argument("--shape", required=True, help="channels,height,width e.g. 1,28,28")
    s.add_argument("--variant", default="dgmw", choices=["dgmw", "dgma"])
    s.add_argument("--preset", default="small", choices=["tiny", "small", "paper"])
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="hyper-parameter override")
    add_gate_options(s)
    _client(s, run=cmd_learners_create)
    _client(learners.add_parser("list", help="list learners"), run=cmd_learners_list)
    s = learners.add_parser("update", help="change the activation policy or the regression gate's thresholds")
    s.add_argument("name")
    add_gate_options(s)
    _client(s, run=cmd_learners_update)
    s = learners.add_parser("show", help="one learner: classes, active version, status, configuration")
    s.add_argument("name")
    _client(s, run=cmd_learners_show)
    s = learners.add_parser("delete", help="delete a learner: every row and file (admin)")
    s.add_argument("name")
    s.add_argument("--force", action="store_true", help="even while one of its jobs runs")
    _client(s, run=cmd_learners_delete)


def add_forget_commands(sub: Any) -> None:
    s = sub.add_parser("forget", help="train a new version without a class (admin)")
    s.add_argument("learner")
    s.add_argument("label")
    s.add_argument("--wait", action="store_true", help="follow the job with a progress bar to its end")
    _client(s, run=cmd_forget)
    s = sub.add_parser("purge", help="delete the files of every version that still holds a class (admin)")
    s.add_argument("learner")
    s.add_argument("label")
    _client(s, run=cmd_purge)


def add_gate_options(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--auto-activate",
        choices=["gate", "always", "never"],
        help="a new version: activate it if the regression gate passes (default), always, or never",
    )
    s.add_argument(
        "--gate-max-drop",
        type=float,
        help="largest drop of the earlier tasks' mean accuracy, among old classes (0.05)",
    )
    s.add_argument(
        "--gate-max-task-drop",
        type=float,
        help="largest accuracy drop of any one earlier task, among old classes (0.4)",
    )
    s.add_argument(
        "--gate-max-to-new",
        type=float,
        help="largest share of an earlier task answered with new classes (0.5)",
    )
    s.add_argument("--gate-min-fidelity", type=float, help="lowest memory fidelity of a class (0.8)")


def add_task_commands(sub: Any) -> None:
    s = sub.add_parser("upload", help="upload a task (.npz or .zip of class folders)")
    s.add_argument("learner")
    s.add_argument("file", type=Path)
    s.add_argument("--holdout", type=float, default=0.0, help="fraction kept for the accuracy matrix")
    s.add_argument("--wait", action="store_true", help="follow the job with a progress bar to its end")
    _client(s, run=cmd_upload)

    s = sub.add_parser("tasks", help="the task list of a learner, oldest first")
    s.add_argument("learner")
    _client(s, run=cmd_tasks)

    s = sub.add_parser("history", help="tasks, versions and the accuracy matrix of a learner")
    s.add_argument("learner")
    _client(s, run=cmd_history)


def add_job_commands(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="show, wait for, cancel or retry a training job").add_subparsers(
        title="job commands"
    )
    for name, run, text in (
        ("show", cmd_jobs_show, "state and progress of a job"),
        ("wait", cmd_jobs_wait, "follow a job with a progress bar; exit 1 unless it succeeds"),
        ("cancel", cmd_jobs_cancel, "cancel a queued or running job"),
        ("retry", cmd_jobs_retry, "retry a failed or cancelled job"),
    ):
        s = jobs.add_parser(name, help=text)
        s.add_argument("id", type=int)
        if name == "retry":
            s.add_argument("--wait", action="store_true", help="follow the job with a progress bar")
        _client(s, run=run)


def add_version_commands(sub: Any) -> None:
    versions = sub.add_parser("versions", help="list model versions or activate one").add_subparsers(
        title="version commands"
    )
    s = versions.add_parser("list", help="versions with parameters, growth, checkpoint and accuracy")
    s.add_argument("learner")
    _client(s, run=cmd_versions_list)
    s = versions.add_parser("activate", help="serve version N from now on (roll back or forward)")
    s.add_argument("learner")
    s.add_argument("number", type=int)
    _client(s, run=cmd_versions_activate)

    s = sub.add_parser("samples", help="save the generator's sample grid of a version as PNG")
    s.add_argument("learner")
    s.add_argument("--version", type=int, help="default: the active version")
    s.add_argument("-o", "--output", type=Path, help="default: <learner>-v<N>-samples.png")
    _client(s, run=cmd_samples, json_out=False)

    s = sub.add_parser("plots", help="save a chart of the history as PNG")
    s.add_argument("learner")
    s.add_argument("kind", choices=["accuracy", "capacity", "at"])
    s.add_argument("-o", "--output", type=Path, help="default: <learner>-<kind>.png")
    _client(s, run=cmd_plots, json_out=False)


def add_rollout_commands(sub: Any) -> None:
    rollout = sub.add_parser(
        "rollout", help="canary or shadow a candidate version beside the active one; promote or abort"
    ).add_subparsers(title="rollout commands")
    s = rollout.add_parser("start", help="put version N beside the active one as a canary or a shadow")
    s.add_argument("learner")
    s.add_argument("number", type=int)
    mode = s.add_mutually_exclusive_group(required=True)
    mode.add_argument("--canary", type=int, metavar="PERCENT", help="send PERCENT of requests (0..100) to N")
    mode.add_argument("--shadow", action="store_true", help="answer from the active version, score N too")
    _client(s, run=cmd_rollout_start)
    for name, text in (
        ("promote", "the candidate becomes the active version; the rollout ends"),
        ("abort", "end the rollout; the active version answers every request"),
    ):
        s = rollout.add_parser(name, help=text)
        s.add_argument("learner")
        s.set_defaults(rollout_action=name)
        _client(s, run=cmd_rollout_end)


def add_predict_commands(sub: Any) -> None:
    s = sub.add_parser("predict", help="classify image files (PNG/JPEG), or one .npy uint8 batch")
    s.add_argument("learner")
    s.add_argument("images", nargs="+", type=Path)
    s.add_argument("--top-k", type=int, default=1)
    s.add_argument("--version", type=int)
    _client(s, run=cmd_predict)


def add_key_commands(sub: Any) -> None:
    keys = sub.add_parser("keys", help="create, list or revoke API keys").add_subparsers(title="key commands")
    s = keys.add_parser("create", help="create a key (printed once)")
    s.add_argument("name")
    s.add_argument("--scopes", default="predict", help="comma-separated: predict,train,admin")
    s.add_argument(
        "--learners", help="comma-separated learner names or name prefixes ending in '*' (default: all)"
    )
    s.add_argument("--local", action="store_true", help="write to the configured database directly")
    _client(s, run=cmd_keys_create)
    s = keys.add_parser("list", help="list keys (id, name, prefix, scopes, learners, revoked)")
    _client(s, run=cmd_keys_list)
    s = keys.add_parser("revoke", help="revoke a key by id (its dashboard sessions end too)")
    s.add_argument("id", type=int)
    s.add_argument("--local", action="store_true", help="write to the configured database directly")
    _client(s, run=cmd_keys_revoke)
    add_session_commands(sub)


def add_session_commands(sub: Any) -> None:
    sessions = sub.add_parser("sessions", help="list or end dashboard sessions (admin)")
    commands = sessions.add_subparsers(title="session commands")
    _client(
        commands.add_parser("list", help="dashboard sign-ins: id, key, expiry, active"), run=cmd_sessions_list
    )
    s = commands.add_parser("revoke", help="end a dashboard session by id")
    s.add_argument("id", type=int)
    _client(s, run=cmd_sessions_revoke)
