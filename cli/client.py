"""The HTTP client commands (--url/--key or DGM_URL/DGM_KEY) and their table printing; exit codes as
in `cli/main.py`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # the server failed (5xx), or the job failed or was cancelled
EXIT_USAGE = 2  # bad arguments or local files (argparse uses 2 as well)
EXIT_REFUSED = 3  # the API answered 4xx: unknown learner/job/version, bad input, conflict, bad key
EXIT_UNREACHABLE = 4  # no answer: connection refused, DNS, timeout


def gate_options(args: argparse.Namespace) -> dict[str, Any]:
    given = {"auto_activate": args.auto_activate, "gate_max_drop": args.gate_max_drop}
    given["gate_min_fidelity"] = args.gate_min_fidelity
    given["gate_max_task_drop"] = args.gate_max_task_drop
    given["gate_max_to_new"] = args.gate_max_to_new
    return {k: v for k, v in given.items() if v is not None}


class ClientError(Exception):
    """A failed client command: `main` prints the message to stderr and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def request(args: argparse.Namespace, method: str, path: str, raw: bool = False, **kw: Any) -> Any:
    """One API call: the parsed JSON (or the body's bytes when `raw`); ClientError with the exit code
    of the documented scheme and the server's detail otherwise."""
    import httpx

    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    headers |= kw.pop("headers", {})
    try:
        r = httpx.request(method, args.url.rstrip("/") + path, headers=headers, timeout=120, **kw)
    except httpx.HTTPError as exc:
        raise ClientError(f"cannot reach {args.url}: {exc}", EXIT_UNREACHABLE) from exc
    if r.status_code >= 400:
        code = EXIT_REFUSED if r.status_code < 500 else EXIT_FAILED
        try:
            body = r.json()
        except ValueError:
            raise ClientError(f"{r.status_code}: {r.text[:500]}", code) from None
        raise ClientError(f"{r.status_code} {body.get('error')}: {body.get('detail')}", code)
    return r.content if raw else r.json()


def _dump(out: Any) -> int:
    print(json.dumps(out, indent=2))
    return EXIT_OK


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise ClientError(f"no such file: {path}", EXIT_USAGE)
    return path


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _shape(raw: str) -> list[int]:
    try:
        shape = [int(v) for v in raw.split(",")]
    except ValueError:
        shape = []
    if len(shape) != 3:
        raise ClientError(f"--shape takes channels,height,width such as 1,28,28; got {raw!r}", EXIT_USAGE)
    return shape


def cmd_learners_create(args: argparse.Namespace) -> int:
    bad = [kv for kv in args.set if "=" not in kv]
    if bad:
        raise ClientError(f"--set takes KEY=VALUE; got {bad}", EXIT_USAGE)
    overrides = {k: _parse_value(v) for k, _, v in (kv.partition("=") for kv in args.set)}
    body = {"name": args.name, "image_shape": _shape(args.shape), "variant": args.variant}
    body |= {"preset": args.preset, "hyperparameters": overrides} | gate_options(args)
    out = request(args, "POST", "/v1/learners", json=body)
    if args.json:
        return _dump(out)
    print(
        f"created learner {out['name']} ({out['variant']}, preset {out['preset']}, "
        f"shape {out['image_shape']})"
    )
    return 0


def cmd_learners_update(args: argparse.Namespace) -> int:
    changes = gate_options(args)
    if not changes:
        raise ClientError(
            "give --auto-activate, --gate-max-drop, --gate-max-task-drop, --gate-max-to-new or "
            "--gate-min-fidelity",
            EXIT_USAGE,
        )
    out = request(args, "PATCH", f"/v1/learners/{args.name}", json=changes)
    if args.json:
        return _dump(out)
    print(f"learner {out['name']}: {gate_line(out)}")
    return 0


def gate_line(learner: dict) -> str:
    line = f"activation {learner['auto_activate']}"
    if learner["auto_activate"] == "gate":
        shown = [  # .get: a server from before gate_max_task_drop and gate_max_to_new lacks them
            ("max drop", learner.get("gate_max_drop")),
            ("max task drop", learner.get("gate_max_task_drop")),
            ("max to new", learner.get("gate_max_to_new")),
            ("min fidelity", learner.get("gate_min_fidelity")),
        ]
        line += " (" + ", ".join(f"{k} {v}" for k, v in shown if v is not None) + ")"
    held = learner.get("held_versions") or []
    return line + (f"; held versions: {', '.join(map(str, held))}" if held else "")


def cmd_learners_list(args: argparse.Namespace) -> int:
    rows = request(args, "GET", "/v1/learners")
    if args.json:
        return _dump(rows)
    print(f"{'name':20} {'variant':7} {'shape':12} {'version':>7} {'classes':>7}  status")
    for r in rows:
        shape = "x".join(map(str, r["image_shape"]))
        version = r["active_version"] or "-"
        print(
            f"{r['name']:20} {r['variant']:7} {shape:12} {version:>7} {len(r['classes']):>7}  {r['status']}"
        )
    return 0


def cmd_learners_show(args: argparse.Namespace) -> int:
    r = request(args, "GET", f"/v1/learners/{args.name}")
    if args.json:
        return _dump(r)
    shape = "x".join(map(str, r["image_shape"]))
    print(f"learner {r['name']}: {r['variant']}, preset {r['preset']}, images {shape}, status {r['status']}")
    print(f"active version: {r['active_version'] or 'none'}")
    print(rollout_line(r))
    print(gate_line(r))
    print(f"classes ({len(r['classes'])}): {', '.join(r['classes']) or '-'}")
    print(
        "config: " + ", ".join(f"{k}={v}" for k, v in sorted(r["config"].items()) if not isinstance(v, dict))
    )
    return 0


def _label_path(label: str) -> str:
    from urllib.parse import quote

    return quote(label, safe="")


def cmd_learners_delete(args: argparse.Namespace) -> int:
    params = {"force": "true"} if args.force else {}
    out = request(args, "DELETE", f"/v1/learners/{args.name}", params=params)
    if args.json:
        return _dump(out)
    counts = ", ".join(f"{n} {table}" for table, n in out["deleted"].items() if n)
    print(f"learner {out['learner']} deleted: {counts}; its files are gone")
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    out = request(args, "DELETE", f"/v1/learners/{args.learner}/classes/{_label_path(args.label)}")
    task, job = out["task"], out["job"]
    if not args.json:
        print(f"task #{task['ordinal']} accepted: forget {args.label!r}; job {job['id']}")
    if not args.wait:
        return _dump(out) if args.json else EXIT_OK
    job = follow_job(args, job["id"])
    removed = (job.get("result") or {}).get("removed")
    if removed and not args.json:
        released = sum((removed.get("mask_units_released") or {}).values())
        print(
            f"removed {removed['label']!r} (learned by task #{removed['learned_by_task']}): "
            f"{removed['heads_removed']} generator head(s), {released} mask units released"
        )
    return _finished(args, job)


def cmd_purge(args: argparse.Namespace) -> int:
    out = request(args, "POST", f"/v1/learners/{args.learner}/classes/{_label_path(args.label)}/purge")
    if args.json:
        return _dump(out)
    purged = ", ".join(map(str, out["purged"])) or "none"
    before = ", ".join(map(str, out["already_purged"]))
    print(f"purged versions holding {args.label!r}: {purged}" + (f" (already: {before})" if before else ""))
    return EXIT_OK


def cmd_upload(args: argparse.Namespace) -> int:
    with open(_existing(args.file), "rb") as f:
        out = request(
            args, "POST", f"/v1/learners/{args.learner}/tasks",
            files={"file": (args.file.name, f)}, data={"holdout": str(args.holdout)},
        )  # fmt: skip
    task, job = out["task"], out["job"]
    if not args.json:
        print(
            f"task #{task['ordinal']} accepted: classes {task['classes']}, {task['n_train']} training "
            f"images; job {job['id']}"
        )
    if not args.wait:
        return _dump(out) if args.json else EXIT_OK
    return _finished(args, follow_job(args, job["id"]))


def _finished(args: argparse.Namespace, job: dict) -> int:
    """Report a finished job; exit 0 only when it succeeded."""
    line = f"job {job['id']} {job['state']}" + (f": {job['error']}" if job.get("error") else "")
    if args.json:
        _dump(job)
    else:
        print(line)
    for warning in job.get("warnings") or []:  # stderr: what scripts parse on stdout stays the same
        print(f"warning: {warning}", file=sys.stderr)
    if (job.get("result") or {}).get("gate"):
        print(gate_verdict(job["result"]["gate"]), file=sys.stderr)
    if job["state"] != "succeeded":
        print(f"error: {line}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def gate_verdict(verdict: dict) -> str:
    """The regression gate's decision on a job's version, one line per reason (core/gate.py)."""
    from core.gate import describe_reason

    text = f"regression gate ({verdict['policy']}): {verdict['decision']}"
    text += "".join(f"\n  held: {describe_reason(r)}" for r in verdict.get("reasons") or [])
    return text + (f"\n  note: {verdict['note']}" if verdict.get("note") else "")


def follow_job(args: argparse.Namespace, job_id: int, poll: float = 1.0) -> dict:
    """Poll the job until it ends, with a progress bar on stderr."""
    from tqdm import tqdm

    with tqdm(total=1, unit="step", desc=f"job {job_id}", file=sys.stderr) as bar:
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


def cmd_tasks(args: argparse.Namespace) -> int:
    rows = request(args, "GET", f"/v1/learners/{args.learner}/tasks")
    if args.json:
        return _dump(rows)
    print(f"{'task':>4} {'state':10} {'job':>5} {'classes':30} {'train':>6} {'holdout':>7}  uploaded")
    for t in rows:
        print(
            f"{t['ordinal']:>4} {t['state']:10} {t['job_id'] or '-':>5} {task_classes(t)[:30]:30} "
            f"{t['n_train']:>6} {t['n_holdout']:>7}  {t['created_at'][:19]}"
        )
    return 0


def task_classes(t: dict) -> str:
    """A task's classes for a table; a forget task says so."""
    classes = ",".join(t["classes"])
    return f"forget {classes}" if t.get("kind") == "forget" else classes


def _job_line(job: dict) -> str:
    p = job.get("progress") or {}
    line = f"job {job['id']} (task {job['task_id']}): {job['state']}, attempt {job['attempts']}"
    if p.get("total"):
        line += f", step {p['step']}/{p['total']}"
        if p.get("eta_s") is not None:
            line += f", ETA {p['eta_s']:.0f} s"
    line += f"\nerror: {job['error']}" if job.get("error") else ""
    return line + "".join(f"\nwarning: {w}" for w in job.get("warnings") or [])


def cmd_jobs_show(args: argparse.Namespace) -> int:
    job = request(args, "GET", f"/v1/jobs/{args.id}")
    if args.json:
        return _dump(job)
    print(_job_line(job))
    return 0


def cmd_jobs_wait(args: argparse.Namespace) -> int:
    return _finished(args, follow_job(args, args.id))


def cmd_jobs_cancel(args: argparse.Namespace) -> int:
    job = request(args, "POST", f"/v1/jobs/{args.id}/cancel")
    if args.json:
        return _dump(job)
    note = " (stops at its next check)" if job["state"] == "running" else ""
    print(f"job {job['id']} {job['state']}{note}")
    return 0


def cmd_jobs_retry(args: argparse.Namespace) -> int:
    job = request(args, "POST", f"/v1/jobs/{args.id}/retry")
    if args.wait:
        return _finished(args, follow_job(args, job["id"]))
    if args.json:
        return _dump(job)
    print(f"job {job['id']} {job['state']} again")
    return 0


def cmd_versions_list(args: argparse.Namespace) -> int:
    rows = request(args, "GET", f"/v1/learners/{args.learner}/versions")
    if args.json:
        return _dump(rows)
    head = f"{'version':>7} {'task':>4} {'from':>4} {'classes':>7} {'params':>9} {'added':>5} {'secs':>6}"
    print(head + f"  {'status':9}  sha256")
    for v in rows:
        mark = "*" if v["active"] else " "
        print(
            f"{v['number']:>6}{mark} {v['task_ordinal'] or '-':>4} {v['trained_from'] or '-':>4} "
            f"{len(v['classes']):>7} {v['parameters']:>9} {sum(v['units_added'].values()):>5} "
            f"{v['train_seconds']:>6.1f}  {v.get('status', 'published'):9}  {v['checkpoint_sha256'][:16]}"
        )
    print_holds(rows)
    return 0


def print_holds(versions: list[dict]) -> None:
    """Why each version was held by the regression gate (also after an admin activated it)."""
    from core.gate import describe_reason

    for v in versions:
        if v.get("hold_reasons"):
            now = "held" if v.get("status") == "held" else f"was held, now {v.get('status')}"
            print(f"\nversion {v['number']} {now}:")
            for r in v["hold_reasons"]:
                print(f"  {describe_reason(r)}")


def cmd_versions_activate(args: argparse.Namespace) -> int:
    v = request(args, "POST", f"/v1/learners/{args.learner}/versions/{args.number}/activate")
    if args.json:
        return _dump(v)
    print(f"learner {args.learner} now serves version {v['number']} ({len(v['classes'])} classes)")
    return 0


def rollout_line(learner: dict) -> str:
    r = learner.get("rollout")
    if not r:
        return "rollout: none"
    share = f"{r['percent']}% of requests" if r["mode"] == "canary" else "scored beside every request"
    return f"rollout: {r['mode']} of version {r['candidate_version']} ({share})"


def cmd_rollout_start(args: argparse.Namespace) -> int:
    body = {"version": args.number, "mode": "shadow" if args.shadow else "canary"}
    if not args.shadow:
        body["percent"] = args.canary
    out = request(args, "POST", f"/v1/learners/{args.learner}/rollout", json=body)
    if args.json:
        return _dump(out)
    print(f"learner {args.learner}: active version {out['active_version']}; {rollout_line(out)}")
    return 0


def cmd_rollout_end(args: argparse.Namespace) -> int:
    action = args.rollout_action
    out = request(args, "POST", f"/v1/learners/{args.learner}/rollout/{action}")
    if args.json:
        return _dump(out)
    done = "promoted: the candidate is active" if action == "promote" else "rollout aborted"
    print(f"learner {args.learner}: {done}; active version {out['active_version']}")
    return 0


def _save(data: bytes, path: Path) -> int:
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ClientError(f"cannot write {path}: {exc}", EXIT_USAGE) from exc
    print(f"saved {path} ({len(data)} bytes)")
    return 0


def cmd_samples(args: argparse.Namespace) -> int:
    number = args.version
    if number is None:
        number = request(args, "GET", f"/v1/learners/{args.learner}")["active_version"]
        if number is None:
            raise ClientError(f"learner {args.learner} has no version yet; upload a task first", EXIT_REFUSED)
    png = request(args, "GET", f"/v1/learners/{args.learner}/versions/{number}/samples.png", raw=True)
    return _save(png, args.output or Path(f"{args.learner}-v{number}-samples.png"))


def cmd_plots(args: argparse.Namespace) -> int:
    png = request(args, "GET", f"/v1/learners/{args.learner}/plots/{args.kind}.png", raw=True)
    return _save(png, args.output or Path(f"{args.learner}-{args.kind}.png"))


def cmd_predict(args: argparse.Namespace) -> int:
    for p in args.images:
        _existing(p)
    path = f"/v1/learners/{args.learner}/predict"
    options = {"top_k": str(args.top_k)} | ({"version": str(args.version)} if args.version else {})
    if args.images[0].suffix == ".npy":
        if len(args.images) != 1:
            raise ClientError("send one .npy batch, or PNG/JPEG files; not a mix", EXIT_USAGE)
        body = args.images[0].read_bytes()
        headers = {"content-type": "application/x-npy"}
        out = request(args, "POST", path, content=body, params=options, headers=headers)
        names = [f"{args.images[0]}[{i}]" for i in range(len(out["predictions"]))]
    else:
        files = [("files", (p.name, p.read_bytes())) for p in args.images]
        out = request(args, "POST", path, files=files, data=options)
        names = [str(p) for p in args.images]
    if args.json:
        return _dump(out)
    for name, pred in zip(names, out["predictions"], strict=True):
        others = ", ".join(f"{lab} {s:.3f}" for lab, s in pred["top_k"][1:])
        print(f"{name}: {pred['label']} ({pred['score']:.3f})" + (f"  [{others}]" if others else ""))
    print(f"version {out['version']}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    h = request(args, "GET", f"/v1/learners/{args.learner}/history")
    if args.json:
        return _dump(h)
    print(f"learner {h['learner']['name']}: active version {h['learner']['active_version']}")
    print(gate_line(h["learner"]))
    print(f"{'task':>4} {'state':10} {'classes':30} {'train':>6} {'holdout':>7}")
    for t in h["tasks"]:
        print(
            f"{t['ordinal']:>4} {t['state']:10} {task_classes(t)[:30]:30} "
            f"{t['n_train']:>6} {t['n_holdout']:>7}"
        )
    m = h["accuracy_matrix"]
    print(
        "\n"
        + f"{'version':>7} {'params':>8} {'added':>8} {'secs':>6} {'min fid':>7}  "
        + " ".join(f"T{o:<5}" for o in m["tasks"])
    )
    for v, row in zip(h["versions"], m["rows"], strict=True):
        accs = " ".join("  -   " if a is None else f"{a:.3f} " for a in row["accuracy"])
        mark = "*" if v["active"] else {"held": "h", "purged": "p"}.get(v.get("status"), " ")
        added = sum(v["units_added"].values())
        measured = [f for f in (v.get("fidelity") or {}).values() if f is not None]
        low = f"{min(measured):.3f}" if measured else "-"
        secs = v["train_seconds"]
        print(f"{v['number']:>6}{mark} {v['parameters']:>8} {added:>8} {secs:>6.1f} {low:>7}  {accs}")
    print_holds(h["versions"])
    print_fidelity(h)
    return 0


def print_fidelity(h: dict) -> None:
    """Memory fidelity per class of the active version, classes below the threshold flagged."""
    from core.fidelity import WARN_BELOW, describe

    active = next((v for v in h["versions"] if v["active"]), None)
    if active is None or active.get("fidelity") is None:
        return
    one_class = {t["classes"][0] for t in h["tasks"] if len(t["classes"]) == 1 and t.get("kind") != "forget"}
    print(f"\nmemory fidelity of version {active['number']} (fraction of each class's samples recognised)")
    for c in active["classes"]:
        f = active["fidelity"].get(c)
        flag = f"  LOW: below {WARN_BELOW}" if f is not None and f < WARN_BELOW else ""
        print(f"  {c[:30]:30} {describe(f, c in one_class)}{flag}")


def cmd_keys_create(args: argparse.Namespace) -> int:
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    learners = None if args.learners is None else [n.strip() for n in args.learners.split(",") if n.strip()]
    if args.local:
        from core.db import session_scope
        from core.errors import AppError
        from core.keys import create_key
        from core.settings import get_settings

        with session_scope(get_settings()) as s:
            try:
                row, key = create_key(s, args.name, scopes, learners)
            except AppError as exc:
                raise ClientError(exc.detail, EXIT_REFUSED) from exc
            out = {"id": row.id, "name": row.name, "scopes": list(row.scopes), "learners": row.learners}
            out["key"] = key
    else:
        body = {"name": args.name, "scopes": scopes, "learners": learners}
        out = request(args, "POST", "/v1/keys", json=body)
    if args.json:
        return _dump(out)
    reach = "every learner" if out.get("learners") is None else ",".join(out["learners"])
    print(f"key {out['id']} ({','.join(out['scopes'])}; {reach}): {out['key']}")
    print("store it now; it is not shown again")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    rows = request(args, "GET", "/v1/keys")
    if args.json:
        return _dump(rows)
    print(f"{'id':>4} {'name':24} {'prefix':14} {'scopes':22} {'learners':20} {'revoked':7}  created")
    for k in rows:
        reach = "*" if k.get("learners") is None else ",".join(k["learners"])
        print(
            f"{k['id']:>4} {k['name'][:24]:24} {k['prefix']:14} {','.join(k['scopes']):22} {reach[:20]:20} "
            f"{'yes' if k['revoked'] else 'no':7}  {k['created_at'][:19]}"
        )
    return 0


def cmd_sessions_list(args: argparse.Namespace) -> int:
    rows = request(args, "GET", "/v1/sessions")
    if args.json:
        return _dump(rows)
    print(f"{'id':>4} {'key':>4} {'key name':24} {'active':6}  {'created':19}  expires")
    for r in rows:
        print(
            f"{r['id']:>4} {r['key_id']:>4} {r['key_name'][:24]:24} {'yes' if r['active'] else 'no':6}  "
            f"{r['created_at'][:19]:19}  {r['expires_at'][:19]}"
        )
    return 0


def cmd_sessions_revoke(args: argparse.Namespace) -> int:
    out = request(args, "DELETE", f"/v1/sessions/{args.id}")
    if args.json:
        return _dump(out)
    print(f"dashboard session {args.id} ended")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    if args.local:
        from core.db import session_scope
        from core.orm import ApiKey
        from core.settings import get_settings

        with session_scope(get_settings()) as s:
            row = s.get(ApiKey, args.id)
            if row is None:
                raise ClientError(f"no key {args.id}", EXIT_REFUSED)
            row.revoked = True
            out = {"id": row.id, "name": row.name, "revoked": True}
    else:
        out = request(args, "DELETE", f"/v1/keys/{args.id}")
    if args.json:
        return _dump(out)
    print(f"key {args.id} revoked")
    return 0
