"""Probes of scripts/compose-check.sh against a running compose stack (stdlib only: it runs on the
host, outside every image).

  compose_probe.py swaps CONTROLLER_URL           -> slicetwin_model_swaps_total (or -1)
  compose_probe.py targets PROM_URL               -> JSON {job: health} of Prometheus's targets
  compose_probe.py dashboards PROM_URL DASHBOARD  -> JSON {"queries", "with_data", "empty", "errors"}
  compose_probe.py healthz URL                    -> exit 0 when URL answers 200
  compose_probe.py gnb-summary                    -> reads `docker logs` of the gNB on stdin,
                                                     prints its final JSON summary line
  compose_probe.py gnb-summaries                  -> the same, every summary (one per run of
                                                     the container) as a JSON list
"""

from __future__ import annotations

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request


def get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def swaps(base: str) -> float:
    status, body = get(f"{base}/metrics")
    if status != 200:
        return -1.0
    for line in body.splitlines():
        if line.startswith("slicetwin_model_swaps_total "):
            return float(line.split()[1])
    return -1.0


def targets(prom: str) -> dict[str, str]:
    status, body = get(f"{prom}/api/v1/targets?state=active")
    if status != 200:
        return {}
    return {t["labels"].get("job", "?") + "@" + t["labels"].get("instance", "?"): t["health"]
            for t in json.loads(body)["data"]["activeTargets"]}


def _panels(panels):
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))


# Grafana's own variables, as the dashboard would resolve them over a short range
_GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "15m"}


def dashboards(prom: str, path: str) -> dict:
    board = json.load(open(path))
    out = {"queries": 0, "with_data": 0, "empty": [], "errors": []}
    for panel in _panels(board.get("panels", [])):
        for t in panel.get("targets", []):
            expr = t.get("expr")
            if not expr:
                continue
            for k, v in _GRAFANA_VARS.items():
                expr = expr.replace(k, v)
            out["queries"] += 1
            status, body = get(f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}")
            label = f"{panel.get('title', '?')}: {expr}"
            if status != 200:
                out["errors"].append(f"{label} -> HTTP {status} {body[:200]}")
            elif json.loads(body)["data"]["result"]:
                out["with_data"] += 1
            else:
                out["empty"].append(label)
    return out


def gnb_summaries(text: str) -> list[dict]:
    """The gNB prints its summary as one JSON object (--json) each time it stops: one per run
    of its container, oldest first."""
    found = []
    for line in text.splitlines():
        line = re.sub(r"^[^{]*\| ", "", line).strip()  # docker-compose's "gnb_1  | " prefix
        if line.startswith("{") and "failed_requests" in line:
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return found


def gnb_summary(text: str) -> dict:
    """The last summary, or {} when there is none."""
    found = gnb_summaries(text)
    return found[-1] if found else {}


def main(argv: list[str]) -> int:
    cmd, *args = argv
    if cmd == "swaps":
        print(int(swaps(args[0])))
    elif cmd == "targets":
        print(json.dumps(targets(args[0]), sort_keys=True))
    elif cmd == "dashboards":
        print(json.dumps(dashboards(args[0], args[1])))
    elif cmd == "healthz":
        return 0 if get(args[0])[0] == 200 else 1
    elif cmd == "gnb-summary":
        print(json.dumps(gnb_summary(sys.stdin.read())))
    elif cmd == "gnb-summaries":
        print(json.dumps(gnb_summaries(sys.stdin.read())))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
