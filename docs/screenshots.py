"""The MLflow UI screenshots in docs/images, from a store that the tests' sweep makes.

    python docs/screenshots.py [--out docs/images]

It writes the tests' synthetic data, runs the tests' small sweep (`tests/support.py::sweep_command`)
into a temporary folder, serves its store with `mlflow server`, and drives headless Chromium
(Debian's `chromium` package) over the DevTools protocol: the runs page with the sweep's trials
expanded (their Dataset column filled), and the compare page of the trials. MLflow 3.18's UI
starts in its GenAI view whatever the experiment's kind; `?workflowType=machine_learning` opens
the model-training one, the view a user picks with the "Model training" switch.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import aiohttp  # Ray's dashboard dependency (ray[default]): its websocket client speaks to Chromium
from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import SMALL_SYNTH  # noqa: E402 - the tests' own data and sweep
from support import sweep_command  # noqa: E402

from hlp.data.synth import write_synthetic  # noqa: E402

WINDOW = (1600, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hlp-shots-"))
    write_synthetic(str(work / "synth"), SMALL_SYNTH)
    sweep = subprocess.run(sweep_command(work / "synth", "search.num_samples=4", "search.seeds=[0,1]"), cwd=work,
                           capture_output=True, text=True)
    if sweep.returncode != 0:
        sys.exit(f"the tests' sweep failed (exit {sweep.returncode}):\n{sweep.stderr[-3000:]}")
    store = f"sqlite:///{work / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("hpcl-sweep").experiment_id
    trials = [r.info.run_id for r in client.search_runs([experiment]) if "trial_id" in r.data.tags]
    port = _free_port()
    server = subprocess.Popen(["mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1",
                               "--port", str(port)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(base)
        view = "workflowType=machine_learning"
        pages = {
            "mlflow-runs.png": (f"{base}/#/experiments/{experiment}/runs?{view}", [CLOSE_ASSISTANT, EXPAND_PARENT]),
            "mlflow-compare.png": (f"{base}/#/compare-runs?runs={urllib.parse.quote(json.dumps(trials))}"
                                   f"&experiments={urllib.parse.quote(json.dumps([experiment]))}&{view}",
                                   [CLOSE_ASSISTANT]),
        }
        asyncio.run(_shoot(pages, args.out, work))
    finally:
        server.terminate()
        server.wait(timeout=30)
    shutil.rmtree(work, ignore_errors=True)
    for name in pages:
        print(f"wrote {args.out / name}")


CLOSE_ASSISTANT = 'button[data-component-id="mlflow.assistant.chat_panel.close"]'  # the UI's chat panel
EXPAND_PARENT = 'button[data-component-id*="runnamecellrenderer"]'  # the sweep's run: its trials show as rows


async def _shoot(pages: dict[str, tuple[str, list[str]]], out: Path, work: Path) -> None:
    port = _free_port()
    browser = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                f"--remote-debugging-port={port}", f"--user-data-dir={work / 'chromium'}",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = [t for t in _wait_json(f"http://127.0.0.1:{port}/json/list") if t["type"] == "page"][0]
        async with aiohttp.ClientSession() as session, session.ws_connect(page["webSocketDebuggerUrl"],
                                                                           max_msg_size=0) as ws:
            devtools = _DevTools(ws)
            await devtools.call("Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1],
                                deviceScaleFactor=1, mobile=False)
            for name, (url, clicks) in pages.items():
                await devtools.call("Page.navigate", url=url)
                await asyncio.sleep(8)  # the UI's bundle, then its searches
                for selector in clicks:
                    await devtools.click(selector)
                    await asyncio.sleep(3)
                shot = await devtools.call("Page.captureScreenshot", format="png")
                (out / name).write_bytes(base64.b64decode(shot["data"]))
    finally:
        browser.terminate()
        browser.wait(timeout=30)


class _DevTools:
    def __init__(self, ws) -> None:
        self.ws, self.next_id = ws, 0

    async def click(self, selector: str) -> None:
        """A real mouse click on the first element matching `selector` (the UI's grid ignores a
        script's `element.click()`); none is there: nothing."""
        found = await self.call("Runtime.evaluate", returnByValue=True, expression=(
            f"(e => e && (r => [r.x + r.width / 2, r.y + r.height / 2])(e.getBoundingClientRect()))"
            f"(document.querySelector({json.dumps(selector)}))"))
        if not found["result"].get("value"):
            return
        x, y = found["result"]["value"]
        for kind in ("mousePressed", "mouseReleased"):
            await self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, timeout: float = 60) -> None:
    _wait_json(url, timeout, parse=False)


def _wait_json(url: str, timeout: float = 60, parse: bool = True):
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                body = response.read()
            return json.loads(body) if parse else body
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    main()
