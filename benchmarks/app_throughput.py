"""Scoring from the App against scoring from the CLI, on the same images, in one run.

Four paths, interleaved (CLI, App (HTTP), App (Chromium), CLI, ...), each run writing a new
field of the same dataset of real photos:
  CLI             ``fiftyone-dnniqa score --dataset NAME --metric M --field F`` in its own process
  App (HTTP)      the plugin's ``compute_quality`` operator through the App server's route
                  ``/operators/execute/generator``, with the body Chromium sends when Execute is
                  pressed (captured with Playwright), then the request it triggers (the run,
                  which streams its progress), as the App does
  App (Chromium)  headless Chromium on the App: the operator browser, the form's Field filled,
                  Execute pressed, until the result dialog shows
  App (Chromium without animations)
                  the same, with the page's CSS animations and transitions switched off for the
                  run (a diagnostic, not a user's path: what the App's own animations, drawn in
                  software by headless Chromium, cost the run)
The App server runs on loopback with the plugin installed into a plugins folder of its own.
For each run: the run record's images/s (``execute_plan`` alone: reading the view, the
loader, scoring, writing; building the metric excluded), the wall time of the call (the
CLI's includes starting Python and importing), the CPU seconds Chromium used during the
run, and the scores, which must be equal. The table gives medians and ratios to the CLI.

    python benchmarks/app_throughput.py                       # aligned, 60 photos, 3 repeats
    python benchmarks/app_throughput.py --n 60 --repeats 5 --out benchmarks/results/app-throughput.md
    python benchmarks/app_throughput.py --paths "CLI,App (HTTP)"   # without a browser

Images: real ImageNet photos (``$DNNIQA_IMAGENET_SAMPLE``, default ../shared/data/imagenet-sample);
nothing here is synthetic. Chromium: /usr/bin/chromium or ``$DNNIQA_CHROMIUM``. Uses FiftyOne's
configured database; the dataset is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from sample_data import IMAGES  # noqa: E402

URI = "@dnniqa/fiftyone-dnniqa/compute_quality"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: str):
    """The App server on a free loopback port with the plugin installed; (process, url)."""
    from fiftyone_dnniqa.app.plugin import install_plugin

    plugins = os.path.join(folder, "plugins")
    install_plugin(plugins)
    port = _free_port()
    env = dict(os.environ, FIFTYONE_PLUGINS_DIR=plugins)
    log = open(os.path.join(folder, "server.log"), "w")
    proc = subprocess.Popen([sys.executable, "-m", "fiftyone.server.main", "--port", str(port),
                             "--address", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the App server exited: see {log.name}")
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"the App server did not start: see {log.name}")
        time.sleep(0.5)


def app_request(dataset_name: str, metric: str, field: str) -> dict:
    """The body the App posts when Execute is pressed on the form (captured from Chromium:
    an immediate run, ``current_sample`` present, the form's values as ``params``)."""
    params = {"metrics": [metric], "field": field, "overwrite": False, "device": "auto", "decode": "auto"}
    space = {"id": "", "_cls": "Space", "component_id": "root", "children": [
        {"id": "", "_cls": "Panel", "component_id": "default-samples-node", "pinned": True, "type": "Samples",
         "children": []}], "active_child": "default-samples-node"}
    return {"current_sample": None, "dataset_name": dataset_name, "extended": {},
            "extended_selection": {"selection": None}, "filters": {}, "operator_uri": URI, "params": params,
            "selected": [], "selected_samples": [], "selected_labels": [], "view": [], "view_name": None,
            "group_slice": None, "query_performance": True, "spaces": space, "active_fields": []}


def cpu_seconds(procs) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except Exception:  # a process that ended
            pass
    return total


def _post_generator(url: str, body: dict) -> list:
    req = urllib.request.Request(url + "/operators/execute/generator", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        return [json.loads(line) for line in r.read().decode().splitlines() if line.strip()]


def run_app(url: str, dataset_name: str, metric: str, field: str) -> dict:
    """What the App does on Execute: the form's request, which triggers the run as an
    operation of its own, then that triggered request, which streams the progress."""
    request = app_request(dataset_name, metric, field)
    t0 = time.perf_counter()
    first = _post_generator(url, request)
    triggered = [m["body"] for m in first if (m.get("body") or {}).get("operator_uri") == URI]
    lines = _post_generator(url, {**request, "params": triggered[0]["params"]}) if triggered else first
    wall = time.perf_counter() - t0
    if not any("images_per_s" in json.dumps(m) for m in lines):
        raise RuntimeError(f"the operator failed: {lines[-1] if lines else 'no messages'}")
    return {"wall_s": wall, "messages": len(first) + len(lines)}


#: CSS that stops every animation and transition of the page
STILL = "*, *::before, *::after { animation: none !important; transition: none !important; }"


class Browser:
    """Headless Chromium on the App: the form filled and Execute pressed, as a user does."""

    def __init__(self, url: str, dataset_name: str):
        import psutil
        from playwright.sync_api import sync_playwright  # deferred: only this path needs it

        self.pw = sync_playwright().start()
        chromium = os.environ.get("DNNIQA_CHROMIUM") or "/usr/bin/chromium"
        self.browser = self.pw.chromium.launch(executable_path=chromium, headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
        self.page = self.browser.new_page(viewport={"width": 1600, "height": 1000})
        self.page.goto(f"{url}/datasets/{dataset_name}", wait_until="domcontentloaded")
        self.page.locator('[data-cy="new-panel-btn"]:visible').first.wait_for(timeout=120_000)
        self.wait_for_grid()
        self.procs = [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]

    def _open_form(self):
        page = self.page
        item = page.get_by_text("Compute image quality", exact=True)
        for _ in range(30):  # the App lists operators once the plugins have loaded
            page.keyboard.press("Escape")
            page.keyboard.press("`")
            page.keyboard.type("quality")
            deadline = time.time() + 3
            while item.count() == 0 and time.time() < deadline:
                time.sleep(0.2)
            if item.count():
                break
        item.first.click()
        page.get_by_text("Sample field for the scores (also the run key)").wait_for(timeout=120_000)

    def wait_for_grid(self):
        """Until the grid has drawn its first page: FiftyOne animates a background of falling
        pixels while it loads (it hides it then), which an idle reading must not count."""
        self.page.wait_for_function(
            "() => { const e = document.querySelector('[class*=fallingPixels]');"
            " return e && getComputedStyle(e).display === 'none'; }", timeout=120_000)

    def idle_cpu(self, seconds: float = 5.0) -> float:
        """Cores the browser uses on the App's dataset page, doing nothing."""
        cpu0 = cpu_seconds(self.procs)
        time.sleep(seconds)
        return (cpu_seconds(self.procs) - cpu0) / seconds

    def run(self, field: str, still: bool = False) -> dict:
        page = self.page
        style = page.add_style_tag(content=STILL) if still else None
        self._open_form()
        box = page.locator('xpath=//p[text()="Field"]/ancestor::div[contains(@class,"MuiGrid-item")][1]//input')
        box.first.fill(field)
        page.wait_for_timeout(2000)  # the form re-resolves with the new field
        cpu0, t0 = cpu_seconds(self.procs), time.perf_counter()
        page.get_by_role("button", name="Execute").click(timeout=60_000)
        page.get_by_text("Images scored").wait_for(timeout=900_000)
        wall, cpu = time.perf_counter() - t0, cpu_seconds(self.procs) - cpu0
        page.get_by_role("button", name="Done").click(timeout=60_000)
        if style is not None:
            style.evaluate("e => e.remove()")
        return {"wall_s": wall, "browser_cpu_s": cpu}

    def close(self):
        self.browser.close()
        self.pw.stop()


def run_cli(dataset_name: str, metric: str, field: str) -> dict:
    cmd = [sys.executable, "-m", "fiftyone_dnniqa.cli", "score", "--dataset", dataset_name, "--metric", metric,
           "--field", field, "--quiet"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"the CLI failed: {out.stderr[-2000:]}")
    return {"wall_s": wall}


def record(dataset, field: str) -> dict:
    """What the run record says about the last run of ``field``, and its scores."""
    dataset.reload()
    r = dataset.load_run_results(field, cache=False)
    if r.status != "completed":
        raise RuntimeError(f"run '{field}' ended {r.status}: {r.error}")
    return {"images_per_s": r.images_per_s, "elapsed_s": r.elapsed_s, "scores": dataset.values(field)}


def make_dataset(n: int):
    import fiftyone as fo

    files = sorted(os.path.join(IMAGES, f) for f in os.listdir(IMAGES))[:n]
    if len(files) < n:
        sys.exit(f"need {n} images in {IMAGES}, found {len(files)}")
    ds = fo.Dataset(f"dnniqa-app-throughput-{uuid.uuid4().hex[:8]}", persistent=True)
    ds.add_samples([fo.Sample(filepath=f) for f in files], progress=False)
    return ds


PATHS = ("CLI", "App (HTTP)", "App (Chromium)", "App (Chromium without animations)")


def measure(n: int, repeats: int, metric: str, paths=PATHS):
    """Each path ``repeats`` times, interleaved; each run writes a field of its own.
    Returns the runs by path and the cores the browser used idle on the page (or None)."""
    import psutil

    ds = make_dataset(n)
    rows = {path: [] for path in paths}
    folder = tempfile.mkdtemp(prefix="dnniqa-app-throughput-")
    proc, url = start_server(folder)
    server = psutil.Process(proc.pid)
    browser = Browser(url, ds.name) if any(p.startswith("App (Chromium") for p in paths) else None
    idle = browser.idle_cpu() if browser is not None else None
    try:
        for rep in range(repeats):
            for k, path in enumerate(paths):
                field = f"q_{rep}_{k}"
                server_cpu0 = cpu_seconds([server])
                if path == "CLI":
                    out = run_cli(ds.name, metric, field)
                elif path == "App (HTTP)":
                    out = run_app(url, ds.name, metric, field)
                else:
                    out = browser.run(field, still="without animations" in path)
                out["server_cpu_s"] = cpu_seconds([server]) - server_cpu0
                out.update(record(ds, field))
                rows[path].append(out)
                print(f"  {rep + 1}/{repeats} {path}: {out['images_per_s']:.2f} img/s (run record), "
                      f"{out['wall_s']:.1f} s wall, browser CPU {out.get('browser_cpu_s', 0):.1f} s", flush=True)
    finally:
        if browser is not None:
            browser.close()
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        ds.delete()
    return rows, idle


def _join(runs, key, digits):
    return ", ".join(f"{r[key]:.{digits}f}" for r in runs)


def table(rows: dict, n: int, metric: str, idle=None) -> str:
    import torch

    def med(path, key):
        return statistics.median(r.get(key, 0.0) for r in rows[path])

    first = next(iter(rows.values()))[0]["scores"]
    same = all(r["scores"] == first for runs in rows.values() for r in runs)
    gap = max(abs(a - b) for runs in rows.values() for r in runs for a, b in zip(r["scores"], first)
              if a is not None and b is not None)
    lines = [f"# App vs CLI throughput: `{metric}` on {n} real photos",
             "",
             f"{platform.node() or 'machine'}: {os.cpu_count()} cores, torch {torch.__version__}, device "
             f"{'cuda' if torch.cuda.is_available() else 'cpu'}, load average at the end "
             f"{os.getloadavg()[0]:.1f}; {len(rows['CLI'])} interleaved repeats ("
             f"{', '.join(rows)}, ...), medians",
             "",
             "| path | images/s (run record) | runs | vs CLI | wall s per call | browser CPU s per run |",
             "|---|---:|---|---:|---:|---:|"]
    cli = med("CLI", "images_per_s")
    for path in rows:
        lines.append(f"| {path} | {med(path, 'images_per_s'):.2f} | {_join(rows[path], 'images_per_s', 2)} | "
                     f"{med(path, 'images_per_s') / cli:.2f} | {med(path, 'wall_s'):.1f} | "
                     f"{med(path, 'browser_cpu_s'):.1f} |")
    lines += ["", f"Scores identical across all runs: {same} (largest difference from the first run: {gap:.2e}). "
              "Real photos, a real metric, the real App "
              "server and Chromium; nothing synthetic."]
    if idle is not None:
        lines.append(f"The browser on the App's dataset page, before any run and doing nothing, used {idle:.2f} "
                     "of a core (measured over 5 s).")
    lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="number of photos (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of each path")
    ap.add_argument("--metric", default="aligned")
    ap.add_argument("--paths", default=",".join(PATHS), help="among: %(default)s")
    ap.add_argument("--out", help="write the markdown table to this file")
    args = ap.parse_args(argv)
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    rows, idle = measure(args.n, args.repeats, args.metric, [p.strip() for p in args.paths.split(",")])
    text = table(rows, args.n, args.metric, idle)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
