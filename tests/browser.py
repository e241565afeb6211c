"""A real browser for the console's tests: Debian's Chromium, headless, run as a subprocess.

    png = screenshot("http://127.0.0.1:8765/models", "models.png")   # the page as a person sees it
    html = dump_dom("http://127.0.0.1:8765/lineage")                 # the DOM after Chromium parsed it
    assert distinct_colours(png) > 20

Each call starts a fresh Chromium with a throwaway profile (no state shared between pages) and a
timeout: a browser that hangs fails the caller with its stderr instead of hanging the test run.
Chromium comes from .ci/setup_browser.sh (``apt-get install chromium``).

    python -m tests.browser screenshots docs/img     # the README's PNGs, from the tests' database
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

CHROMIUM = os.environ.get("MLDB_CHROMIUM", "/usr/bin/chromium")
TIMEOUT = 120  # seconds for one page (the first start of a cold Chromium on a busy machine is slow)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio"]


class BrowserError(RuntimeError):
    """Chromium failed, hung, or wrote nothing."""


def screenshot(url: str, png: str | Path, width: int = 1280, height: int = 1000) -> Path:
    """``url`` rendered at ``width`` x ``height`` and saved as the PNG ``png``."""
    png = _fresh(png)
    _chromium([f"--window-size={width},{height}", f"--screenshot={png}", url])
    return _written(png, url)


def render(url: str, png: str | Path, width: int = 1280, height: int = 1000) -> str:
    """One Chromium run: ``url`` saved as the PNG ``png``, and its DOM after parsing (what ``dump_dom`` returns)."""
    png = _fresh(png)
    dom = _chromium([f"--window-size={width},{height}", f"--screenshot={png}", "--dump-dom", url])
    _written(png, url)
    return dom


def dump_dom(url: str) -> str:
    """The document of ``url`` as Chromium serialises it after parsing (and loading) the page."""
    return _chromium(["--window-size=1280,1000", "--dump-dom", url])


def visible_text(html: str) -> str:
    """The text a reader sees in ``html`` (no <style>, <script> or <title>), whitespace collapsed."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


def image_sources(html: str) -> list[str]:
    """Every ``<img src>`` of ``html``, in order, each once (entities decoded)."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return list(dict.fromkeys(parser.images))


class _TextParser(HTMLParser):
    HIDDEN = {"style", "script", "title"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.images: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.HIDDEN:
            self._hidden += 1
        elif tag == "img":
            self.images.extend(value for name, value in attrs if name == "src" and value)

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.parts.append(data)


def distinct_colours(png: str | Path) -> int:
    """How many different RGB colours the image has (a blank or failed render has one or two)."""
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 24)
    return len(colours)


def commonest_share(png: str | Path) -> float:
    """The share of pixels in the image's most frequent colour (1.0: a single flat colour)."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 24)
        return max(count for count, _ in colours) / (rgb.width * rgb.height)


def size(png: str | Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(png) as image:
        return image.size


def _fresh(png: str | Path) -> Path:
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)  # (a stale file must not pass for this run's screenshot)
    return png


def _written(png: Path, url: str) -> Path:
    if not png.is_file() or png.stat().st_size == 0:
        raise BrowserError(f"Chromium wrote no screenshot of {url} to {png}")
    return png


def _chromium(arguments: list[str]) -> str:
    """Run Chromium once with a fresh profile; its stdout, or BrowserError with its stderr."""
    if not os.access(CHROMIUM, os.X_OK):
        raise BrowserError(f"no Chromium at {CHROMIUM}: run .ci/setup_browser.sh")
    with tempfile.TemporaryDirectory(prefix="mldb-chromium-") as profile:
        command = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *arguments]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)  # its own process group: a timeout kills every helper
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            raise BrowserError(f"Chromium did not finish in {TIMEOUT} s: {' '.join(arguments)}\n{stderr[-3000:]}")
        finally:
            _kill_leftovers(process.pid)
    if process.returncode != 0:
        raise BrowserError(f"Chromium exited with {process.returncode}: {' '.join(arguments)}\n{stderr[-3000:]}")
    return stdout


def _kill_leftovers(group: int) -> None:
    """Chromium's helper processes that outlived the browser (its own process group only)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- the README's screenshots ------------------------------------------------------------------

README_SHOTS = {  # file name -> (page, window width, height): wide enough for the model page's charts two by two
    "console_model.png": ("/models/churn", 1440, 1500),
    "console_lineage.png": ("/lineage", 1280, 1000),
}


def readme_screenshots(folder: str | Path, database: str | None = None) -> list[Path]:
    """The README's PNGs of the console over the tests' database (built in a temporary folder
    unless ``database`` names one already built by ``tests.console_db.build``)."""
    from tests.console_db import build
    from tests.console_http import console

    with tempfile.TemporaryDirectory(prefix="mldb-shots-") as scratch:
        path = database or build(str(Path(scratch) / "console.db"))
        with console(path) as site:
            written = []
            for name, (page, width, height) in README_SHOTS.items():
                written.append(screenshot(site.base + page, Path(folder) / name, width, height))
                print(f"{written[-1]}: {page}, {distinct_colours(written[-1])} colours")
            return written


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] != "screenshots":
        print("usage: python -m tests.browser screenshots FOLDER [DATABASE]", file=sys.stderr)
        return 2
    readme_screenshots(argv[1], argv[2] if len(argv) == 3 else None)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
