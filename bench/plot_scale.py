"""Draws the CSV of `knafeh-bench scale --csv PATH` as one PNG.

Usage: python bench/plot_scale.py SCALE.csv OUT.png

Six panels: calls/s and p99 latency as calls in flight on one connection
grow, the same as connections grow (4 calls in flight each), and the
server's memory per idle connection and in all, as idle connections grow.
One line per system; points that were not measured (nan) are left out.
"""

import csv
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {
    "knafeh": "#d1495b",
    "tonic-tls": "#00798c",
    "tonic-h2c": "#66a182",
    "tonic-h3": "#edae49",
}


def read(path):
    """{(axis, system): [(n, row), ...]} sorted by n."""
    series = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["axis"], row["system"])
            values = {k: float(row[k]) for k in ("calls_s", "p99_ms", "kib_per_conn")}
            series.setdefault(key, []).append((int(row["n"]), values))
    for points in series.values():
        points.sort(key=lambda p: p[0])
    return series


def panel(ax, series, axis, value, title, ylabel, log_y=False):
    for (a, system), points in series.items():
        if a != axis:
            continue
        xs = [n for n, v in points if math.isfinite(value(n, v))]
        ys = [value(n, v) for n, v in points if math.isfinite(value(n, v))]
        if xs:
            ax.plot(xs, ys, marker="o", label=system, color=COLORS.get(system))
    ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    series = read(sys.argv[1])
    fig, axes = plt.subplots(3, 2, figsize=(11, 12))
    calls = lambda n, v: v["calls_s"]  # noqa: E731
    p99 = lambda n, v: v["p99_ms"]  # noqa: E731
    panel(axes[0][0], series, "inflight", calls, "calls in flight on one connection", "calls/s")
    panel(axes[0][1], series, "inflight", p99, "calls in flight on one connection", "p99 ms", log_y=True)
    panel(axes[1][0], series, "conns", calls, "connections (4 calls in flight each)", "calls/s")
    panel(axes[1][1], series, "conns", p99, "connections (4 calls in flight each)", "p99 ms", log_y=True)
    kib = lambda n, v: v["kib_per_conn"]  # noqa: E731
    mib = lambda n, v: v["kib_per_conn"] * n / 1024  # noqa: E731
    panel(axes[2][0], series, "idle", kib, "idle connections", "server KiB per connection")
    panel(axes[2][1], series, "idle", mib, "idle connections", "server RSS growth, MiB", log_y=True)
    for ax in axes[2]:
        ax.set_xlabel("connections")
    axes[0][0].set_xlabel("calls in flight")
    axes[0][1].set_xlabel("calls in flight")
    axes[1][0].set_xlabel("connections")
    axes[1][1].set_xlabel("connections")
    fig.suptitle("knafeh-bench scale: 64 B unary echo over loopback")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=90)


if __name__ == "__main__":
    main()
