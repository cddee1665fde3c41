"""Screenshot of the dashboard for the README: a learner taught three Fashion-MNIST tasks in turn.

    python -m benchmarks.screenshot_dashboard            # about 2 minutes on 2 CPU cores
    python -m benchmarks.screenshot_dashboard --out /tmp/dash.png --epochs 2 --per-class 200

Starts `dgm serve` (embedded: SQLite, filesystem broker, one worker) in a temporary folder, uploads
the tasks over HTTP, then signs in with headless Chromium (Debian's `chromium` and `chromium-driver`)
and saves the full learner page. Needs `apt-get install -y dataset-fashion-mnist chromium
chromium-driver` and `pip install selenium`.
"""

from __future__ import annotations

import argparse
import io
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from benchmarks.serve import embedded_env, start_serve

ROOT = Path(__file__).resolve().parent.parent
KEY = "screenshot-admin-key"
NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
TASKS = [[0, 1], [5, 7], [8, 9]]  # tops/trousers, then shoes, then bags and boots
# every image that is shown has loaded (lazy images inside a closed <details> never load)
LOADED = """return [...document.images]
    .filter(i => !i.closest("details") || i.closest("details").open)
    .every(i => i.complete && i.naturalWidth > 0)"""


def npz(x: np.ndarray, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


def teach(url: str, epochs: int, per_class: int) -> None:
    from dgm.data import load_mnist_like

    data = load_mnist_like()
    x, y = data["x_train"], data["y_train"]
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as c:
        body = {"name": "fashion", "image_shape": [1, 28, 28], "preset": "tiny", "hyperparameters": {}}
        body["hyperparameters"]["epochs"] = epochs
        c.post("/v1/learners", json=body).raise_for_status()
        for classes in TASKS:
            idx = np.concatenate([np.where(y == k)[0][:per_class] for k in classes])
            labels = np.array([NAMES[k] for k in y[idx]])
            r = c.post(
                "/v1/learners/fashion/tasks",
                files={"file": ("task.npz", npz(x[idx], labels))},
                data={"holdout": "0.2"},
            )
            r.raise_for_status()
            job = r.json()["job"]["id"]
            while (state := c.get(f"/v1/jobs/{job}").json()["state"]) in ("queued", "running"):
                time.sleep(1)
            print(f"task {[NAMES[k] for k in classes]}: job {job} {state}")


def screenshot(url: str, out: Path, width: int = 1400) -> None:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},1000")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(f"{url}/dashboard/fashion")
        driver.find_element(By.ID, "key").send_keys(KEY)
        driver.find_element(By.ID, "sign-in").click()
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.ID, "accuracy"))
        driver.set_window_size(width, 6000)  # tall enough that every open image is in view and loads
        try:
            wait.until(lambda d: d.execute_script(LOADED))
        except TimeoutException:
            state = driver.execute_script(
                "return [...document.images].map(i => [i.src, i.complete, i.naturalWidth])"
            )
            raise RuntimeError(f"images did not load: {state}") from None
        height = driver.execute_script(
            "return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)"
        )
        driver.set_window_size(width, height + 400)  # the window is taller than its viewport
        time.sleep(0.5)  # let the layout settle at the new size before the capture
        shot = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
        out.parent.mkdir(parents=True, exist_ok=True)
        shot.crop((0, 0, shot.width, min(shot.height, height))).save(out, optimize=True)
    finally:
        driver.quit()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--per-class", type=int, default=500)
    args = p.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="dgm-screenshot-"))
    proc, url = start_serve(folder, embedded_env(folder / "var", DGM_ADMIN_KEY=KEY))
    try:
        teach(url, args.epochs, args.per_class)
        screenshot(url, args.out)
        print(f"saved {args.out}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
