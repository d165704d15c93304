#!/usr/bin/env python3
"""Draws docs/observability.png from the series `bsv/examples/metrics_plot.rs` recorded.

    python3 docs/plot_metrics.py metrics.tsv docs/observability.png

Each panel is what the matching panel of docs/grafana-dashboard.json shows, computed the way
Prometheus would: rates over a 10 s window from counter deltas, quantiles by linear
interpolation within histogram buckets (`histogram_quantile`). Needs matplotlib.
"""
import re
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WINDOW = 10.0
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def load(path):
    """{(name, frozenset(labels)): [(t, value)]}"""
    series = defaultdict(list)
    for line in open(path):
        t, s, v = line.rstrip("\n").split("\t")
        name, _, rest = s.partition("{")
        labels = {k: v for k, v in LABEL.findall(rest) if k != "otel_scope_name"}
        series[(name, frozenset(labels.items()))].append((float(t), float(v)))
    # The process started at t=0 with every counter at 0; the exporter shows a series only once
    # it has a value, so counters get their zero back (Prometheus would see it when scraping
    # from the start).
    for (name, _), pts in series.items():
        if name.endswith(("_total", "_bucket", "_count", "_sum")) and pts[0][0] > 0:
            pts.insert(0, (-1.0, 0.0))
    return series


def pick(series, name):
    return {dict(k[1]).__repr__(): (dict(k[1]), pts) for k, pts in series.items() if k[0] == name}


def rate(pts, window=WINDOW):
    out = []
    for i, (t, v) in enumerate(pts):
        j = i
        while j > 0 and t - pts[j - 1][0] <= window + 0.5:
            j -= 1
        t0, v0 = pts[j]
        out.append((t, (v - v0) / (t - t0) if t > t0 else 0.0))
    return out


def quantile(q, buckets):
    """histogram_quantile over [(le, count)] sorted by le (cumulative)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


def quantiles(series, name, qs):
    by_le = {}
    for (n, labels), pts in series.items():
        if n == name + "_bucket":
            le = dict(labels)["le"]
            by_le[float("inf") if le == "+Inf" else float(le)] = dict(pts)
    if not by_le:
        return {q: [] for q in qs}
    times = sorted(set().union(*[set(p) for p in by_le.values()]))
    out = {q: [] for q in qs}
    for t in times:
        t0 = max([x for x in times if x <= t - WINDOW] or [times[0]])
        bs = sorted((le, pts.get(t, 0.0) - pts.get(t0, 0.0)) for le, pts in by_le.items())
        for q in qs:
            v = quantile(q, bs)
            if v is not None:
                out[q].append((t, v * 1000))
    return out


def main():
    src, dst = sys.argv[1], sys.argv[2]
    s = load(src)
    end = max(p[-1][0] for p in s.values())
    fig, ax = plt.subplots(3, 2, figsize=(14, 12))
    fig.suptitle("bsv_p2p metrics: Manager (Fixed mode) against a 10-node simnet, 2 banned, "
                 "1 never pongs, 1 drops after 6 messages; manual ban half-way", fontsize=11)

    a = ax[0][0]
    for _, (labels, pts) in sorted(pick(s, "bsv_p2p_connections").items()):
        a.step(*zip(*pts), where="post", label=f'{labels["state"]}/{labels["direction"]}')
    a.set_title("Connections by state and direction\nsum by (state, direction) (bsv_p2p_connections)")
    a.set_ylabel("connections")
    a.legend(fontsize=8)

    a = ax[0][1]
    per_cmd = defaultdict(lambda: defaultdict(float))
    for _, (labels, pts) in pick(s, "bsv_p2p_messages_total").items():
        for t, v in rate(pts):
            if t >= 0:
                per_cmd[f'{labels["command"]} {labels["direction"]}'][t] += v
    top = sorted(per_cmd, key=lambda k: -max(per_cmd[k].values()))[:8]
    for k in top:
        pts = sorted(per_cmd[k].items())
        a.plot(*zip(*pts), label=k)
    a.set_title("Messages/s by command (top 8)\nsum by (command, direction) (rate(bsv_p2p_messages_total[10s]))")
    a.set_ylabel("messages/s")
    a.legend(fontsize=7, ncol=2)

    a = ax[1][0]
    qs = quantiles(s, "bsv_p2p_ping_rtt_seconds", [0.5, 0.99])
    for q, pts in qs.items():
        if pts:
            a.plot(*zip(*pts), label=f"p{int(q * 100)}")
    a.set_title("Ping RTT\nhistogram_quantile(q, sum by (le) (rate(bsv_p2p_ping_rtt_seconds_bucket[10s])))")
    a.set_ylabel("ms")
    a.legend(fontsize=8)

    a = ax[1][1]
    qs = quantiles(s, "bsv_p2p_handshake_duration_seconds", [0.5, 0.99])
    for q, pts in qs.items():
        if pts:
            a.plot(*zip(*pts), label=f"p{int(q * 100)}")
    a.set_title("Handshake duration\nhistogram_quantile(q, sum by (le) (rate(bsv_p2p_handshake_duration_seconds_bucket[10s])))")
    a.set_ylabel("ms")
    a.legend(fontsize=8)

    a = ax[2][0]
    for _, (labels, pts) in sorted(pick(s, "bsv_p2p_connection_ends_total").items()):
        a.plot(*zip(*rate(pts)[1:]), label=f'{labels["reason"]} (established={labels["established"]})')
    a.set_title("Connection failures and ends/s by reason\nsum by (reason, established) (rate(bsv_p2p_connection_ends_total[10s]))")
    a.set_ylabel("per second")
    a.legend(fontsize=7)

    a = ax[2][1]
    for _, (labels, pts) in sorted(pick(s, "bsv_p2p_bans_total").items()):
        a.step(*zip(*pts), where="post", label=labels["reason"])
    restarts = [pts for (n, _), pts in s.items() if n == "bsv_p2p_connection_restarts_total"]
    if restarts:
        a.step(*zip(*restarts[0]), where="post", label="restarts (bsv_p2p_connection_restarts_total)", linestyle="--")
    a.set_title("Bans by reason (cumulative), restarts\nsum by (reason) (bsv_p2p_bans_total)")
    a.set_ylabel("count")
    a.legend(fontsize=8)

    for row in ax:
        for a in row:
            a.set_xlabel("seconds since start")
            a.set_xlim(0, end)
            a.grid(alpha=0.3)
            a.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(dst, dpi=80)


if __name__ == "__main__":
    main()
