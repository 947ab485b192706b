"""``slicetwin gnb --profile``: the fake gNB's cells run the chosen simulator profile."""

from __future__ import annotations

import json

import httpx
import numpy as np
from typer.testing import CliRunner

from slicetwin.ops.gnb import GnbConfig, run_gnb
from tests.support.controller import controller_process

_CLIENT = httpx.Client  # the real one (the tests below patch httpx.Client)


def _recording_client(bodies: list):
    """An httpx.Client that keeps every request body it sends (the gNB's reports)."""

    class Recording(_CLIENT):
        def __init__(self, *a, **kw):
            super().__init__(*a, event_hooks={"request": [
                lambda r: bodies.append(json.loads(r.content))]}, **kw)

    return Recording


def _arrivals(bodies: list) -> np.ndarray:
    """Arrived packets per slice, summed over every report sent."""
    return np.array([[s["arrived_packets"] for s in b["slices"]] for b in bodies]).sum(0)


def test_gnb_profile_drives_the_reports_and_is_recorded(monkeypatch):
    sent: dict[str, list] = {}
    with controller_process() as url:
        for profile in ("paper", "diurnal"):
            sent[profile] = []
            monkeypatch.setattr(httpx, "Client", _recording_client(sent[profile]))
            s = run_gnb(GnbConfig(controller=url, cells=2, windows=4, seed=1, profile=profile,
                                  cell_prefix=f"prof-{profile}", progress=False))
            assert s.failed_requests == 0 and s.invariant_violations == 0, s.errors
            assert s.decisions == 8 and len(sent[profile]) == 8
            assert s.profile == profile and s.to_dict()["profile"] == profile
        monkeypatch.undo()
        # same seed, other traffic: diurnal's busy, load-modulated cells report other arrivals
        assert not np.array_equal(_arrivals(sent["paper"]), _arrivals(sent["diurnal"]))
        # the CLI: --profile reaches the simulator and the JSON summary
        import slicetwin.cli.main as cli

        cli._register()
        r = CliRunner().invoke(cli.app, ["gnb", "--controller", url, "--cells", "1", "--windows",
                                         "2", "--profile", "flash-crowd", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["profile"] == "flash-crowd" and out["decisions"] == 2


def test_gnb_bad_profile_is_a_clear_cli_error():
    """A bad --profile: exit 2 with the choices, before any request (no controller here)."""
    import slicetwin.cli.main as cli

    cli._register()
    r = CliRunner().invoke(cli.app, ["gnb", "--controller", "http://127.0.0.1:9", "--windows",
                                     "1", "--profile", "rush-hour"])
    assert r.exit_code == 2, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    text = " ".join(r.output.split())
    assert "rush-hour" in text and "--profile" in text
    for choice in ("paper", "diurnal", "flash-crowd", "hetero", "mix=A/B/C"):
        assert choice in text, choice
    assert "Traceback" not in r.output


def test_profile_help_mirrors_the_simulators():
    """slicetwin.cli.controller keeps a copy (module-level import rule); it must not drift."""
    from slicetwin.cli.controller import PROFILE_HELP
    from slicetwin.cli.sim import PROFILE_HELP as SIM_HELP

    assert PROFILE_HELP == SIM_HELP
