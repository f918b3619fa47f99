"""`make plots`: the `dvc plots show` page renders offline (plots/offline.html loads the
vendored vega, vega-lite and vega-embed), checked statically and in headless Chromium."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.params import ROOT
from needs import requires

VENDORED = ["vega.min.js", "vega-lite.min.js", "vega-embed.min.js"]
URL = re.compile(r"https?://[^\s\"'<>]+")
# the Vega-Lite specs DVC writes name their schema by URL; vega-embed reads it to pick the
# Vega-Lite compiler and fetches nothing (the headless test below runs with DNS blocked)
SCHEMA = re.compile(r'"\$schema":\s*"https://vega\.github\.io/schema/[^"]+"')


def make_plots(out: Path, template: bool = True) -> str:
    """`make plots` into `out` with this interpreter's dvc; template=False: DVC's own page."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    if template:
        # -o: the venv is this interpreter's, not a .venv that `make install` would build
        cmd = ["make", "-s", "-o", ".venv/.installed", "plots", f"PLOTS_OUT={out}"]
    else:
        cmd = ["dvc", "plots", "show", "-q", "-o", str(out)]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    return (out / "index.html").read_text()


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("plots")
    return out, make_plots(out)


def vega_divs(html: str) -> int:
    return html.count("vegaEmbed('#")


@pytest.mark.integration  # `make plots` (dvc plots show) in a subprocess
def test_page_loads_the_vendored_scripts_and_no_url(page):
    out, html = page
    assert vega_divs(html) >= 6  # metrics/plots/target/*.csv and metrics/plots/alphavil/*.csv
    srcs = re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html)
    assert [s for s in srcs if s.endswith(".js")] == [f"vendor/{f}" for f in VENDORED]
    for src in srcs:  # every script and image is a file beside the page
        assert (out / src).is_file(), src
    # no URL a browser could fetch: the only ones left are the specs' schema names
    assert URL.findall(SCHEMA.sub("", html)) == []


def test_vendored_bundles_are_the_versions_dvcs_own_page_loads():
    # DVC writes its specs for these versions; a dvc upgrade that moves them needs a re-vendor
    from dvc_render.vega import VegaRenderer

    wanted = dict(re.findall(r"npm/([a-z-]+)@([\d.]+)", VegaRenderer.SCRIPTS))
    assert sorted(wanted) == ["vega", "vega-embed", "vega-lite"]
    vendor = ROOT / "plots/vendor"
    for name, version in wanted.items():
        assert f'="{version}"' in (vendor / f"{name}.min.js").read_text()[:5000], name
        assert "Copyright" in (vendor / f"LICENSE.{name}").read_text()
    # the three bundles only, not npm's tarballs (sources, maps, es5 builds: several MB)
    assert sum(f.stat().st_size for f in vendor.iterdir()) < 1_000_000


def headless_dom(html_file: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium with every host name
    unresolvable: whatever the page would load from the network fails."""
    run = subprocess.run(
        [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
         "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000",
         "--dump-dom", html_file.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def drawn_plots(dom: str) -> list[str]:
    """Per Vega view drawn as SVG, its markup; each must hold a line mark with a path."""
    return re.findall(r'<svg[^>]*class="marks".*?</svg>', dom, flags=re.S)


@pytest.mark.integration
@requires(shutil.which("chromium") is not None, "Debian's chromium to render the page",
          "apt-get install chromium")
def test_offline_page_draws_every_vega_plot_in_headless_chromium(page, tmp_path):
    out, html = page
    views = drawn_plots(headless_dom(out / "index.html"))
    assert len(views) == vega_divs(html)
    for svg in views:
        lines = re.findall(r'aria-roledescription="line mark" d="(M[^"]+)"', svg)
        assert lines and all("L" in d for d in lines)  # a polyline, not an empty path
    # the check itself: DVC's own page (scripts from a CDN) draws nothing offline
    cdn = tmp_path / "cdn"
    assert "cdn.jsdelivr.net" in make_plots(cdn, template=False)
    assert drawn_plots(headless_dom(cdn / "index.html")) == []
