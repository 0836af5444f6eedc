#!/usr/bin/env python3
"""Draw the Grafana dashboard's panels without Grafana: each panel's queries are sent to a real
Prometheus (``/api/v1/query_range``, Grafana's variables filled in as Grafana does) and the
answers plotted with matplotlib in the dashboard's grid.

    pip install -e '.[docs]'
    python scripts/render_dashboard.py --prometheus http://127.0.0.1:9090 --minutes 15 \\
        --output docs/observability-dashboard.png

Grafana is not packaged for the systems this project builds on; this shows what the dashboard
shows for a real run, from the same queries.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.gridspec import GridSpec
from matplotlib.ticker import FuncFormatter

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "observability" / "dashboard.json"
GRID_ROW_PX = 30  # Grafana's height of one grid unit
WIDTH_IN = 24.0


def fill(expression: str, variables: dict[str, str]) -> str:
    # Longest names first, so `$__range` does not eat the start of `$__rate_interval`.
    for name in sorted(variables, key=len, reverse=True):
        expression = expression.replace(name, variables[name])
    return expression


def query_range(
    client: httpx.Client, expression: str, start: float, end: float, step: float
) -> list[dict[str, Any]]:
    response = client.get(
        "/api/v1/query_range",
        params={"query": expression, "start": start, "end": end, "step": step},
    )
    body = response.json()
    if body.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expression!r}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template).strip()


def formatter(unit: str) -> FuncFormatter:
    def show(value: float, _: object) -> str:
        if unit == "percentunit":
            return f"{value * 100:.0f}%"
        if unit == "s":
            return f"{value * 1000:.0f} ms" if 0 < abs(value) < 1 else f"{value:g} s"
        suffix = "/s" if unit in ("reqps", "ops") else ""
        return f"{value:.3g}{suffix}"

    return FuncFormatter(show)


def render(
    dashboard: dict[str, Any], prometheus: str, start: float, end: float, job: str, output: Path
) -> None:
    window = end - start
    step = max(5.0, window / 240)
    variables = {
        # Grafana's default for a window of minutes with its default 15 s scrape interval.
        "$__rate_interval": "1m",
        "$__range": f"{int(window)}s",
        "$job": job,
    }
    panels = dashboard["panels"]
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    plt.style.use("dark_background")
    figure = plt.figure(figsize=(WIDTH_IN, height * GRID_ROW_PX / 60 + 1.0), dpi=80)
    grid = GridSpec(height, 24, figure=figure, hspace=1.6, wspace=1.2, top=0.985, bottom=0.01)
    figure.suptitle(
        f"{dashboard['title']} — {time.strftime('%Y-%m-%d %H:%M', time.gmtime(start))} to "
        f"{time.strftime('%H:%M', time.gmtime(end))} UTC, from Prometheus (panels of "
        "deploy/observability/dashboard.json)",
        fontsize=14,
        y=0.998,
    )
    with httpx.Client(base_url=prometheus, timeout=30) as client:
        for panel in panels:
            pos = panel["gridPos"]
            if panel["type"] == "row":
                axes = figure.add_subplot(grid[pos["y"], :])
                axes.axis("off")
                axes.text(0, 0, panel["title"], fontsize=15, fontweight="bold", va="bottom")
                continue
            rows = slice(pos["y"] + 1, pos["y"] + pos["h"])
            axes = figure.add_subplot(grid[rows, pos["x"] : pos["x"] + pos["w"]])
            axes.set_title(panel["title"], fontsize=10, loc="left")
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
            lines = 0
            for target in panel["targets"]:
                for series in query_range(
                    client, fill(target["expr"], variables), start, end, step
                ):
                    points = [(float(t) - end, float(v)) for t, v in series["values"]]
                    points = [(t / 60, v) for t, v in points if v == v]  # drop NaN
                    if not points:
                        continue
                    xs, ys = zip(*points, strict=True)
                    label = legend(target["legendFormat"], series["metric"])
                    axes.plot(xs, ys, linewidth=1.2, label=label)
                    lines += 1
            axes.yaxis.set_major_formatter(formatter(unit))
            axes.tick_params(labelsize=7)
            axes.set_xlim(-window / 60, 0)
            axes.grid(alpha=0.15)
            if lines:
                axes.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.3)
            else:
                axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
            axes.set_xlabel("minutes", fontsize=7)
    figure.savefig(output, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--minutes", type=float, default=15, help="window ending now")
    parser.add_argument("--job", default=".*", help="the dashboard's job variable (a regex)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    end = time.time()
    render(
        json.loads(args.dashboard.read_text()),
        args.prometheus,
        end - args.minutes * 60,
        end,
        args.job,
        args.output,
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
