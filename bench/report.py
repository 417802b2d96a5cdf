#!/usr/bin/env python3
"""Regenerates BENCHMARKS.md and the SVG charts from bench/out/results/*.json.

    python3 bench/report.py --out bench/out --md BENCHMARKS.md --charts bench/charts

The charts are drawn by matplotlib (bench/run.sh installs it when missing);
everything else is the standard library. The hand-written analysis in
bench/notes.md is included verbatim after the generated tables.
"""

import argparse
import glob
import json
import os
import statistics

MODELS = ["async", "threads", "pool", "fork", "poll", "uring"]
COLORS = {"async": "#1f77b4", "threads": "#ff7f0e", "pool": "#2ca02c", "fork": "#d62728",
          "poll": "#9467bd", "uring": "#17becf", "nginx": "#555555", "python": "#8c564b"}
M64 = 64 * 2**20


def load(out):
    res = {}
    for path in glob.glob(os.path.join(out, "results", "*.json")):
        try:
            with open(path) as f:
                res[os.path.basename(path)[:-5]] = json.load(f)
        except (OSError, ValueError):
            pass
    # bench/object_store.sh and bench/tls.sh keep directories of their own
    # (run.sh wipes results/).
    for key, path in (("s3", ("results-s3", "s3.json")), ("tls", ("results-tls", "tls.json")),
                      ("ab", ("ab", "summary.json"))):
        try:
            with open(os.path.join(out, *path)) as f:
                res[key] = json.load(f)
        except (OSError, ValueError):
            pass
    machine = {}
    try:
        with open(os.path.join(out, "machine.json")) as f:
            machine = json.load(f)
    except (OSError, ValueError):
        pass
    return res, machine


def per_request(delta_ms):
    """What hftp adds to (or saves on) each request, signed."""
    return "{}{} per request".format("+" if delta_ms >= 0 else "−", fmt(abs(delta_ms), "ms"))


def conns_of(res):
    cs = set()
    for k in res:
        if k.startswith("hftp-") and "-c" in k:
            tail = k.rsplit("-c", 1)[1]
            if tail.isdigit():
                cs.add(int(tail))
    return sorted(cs)


# --- figures from results ----------------------------------------------------

def nginx_rps(res, c):
    d = res.get(f"ref-nginx-k1-c{c}")
    return d["requests"] / (d["duration_us"] / 1e6) if d else None


def nginx_mbps(res, c):
    d = res.get(f"ref-nginx-range64-c{c}")
    return d["bytes"] / (d["duration_us"] / 1e6) / 1e6 if d else None


def nginx_p99_ms(res, c):
    d = res.get(f"ref-nginx-k1-c{c}")
    return d["latency_us"]["p99"] / 1000 if d else None


def iperf_mbps(res):
    d = res.get("ref-iperf3")
    try:
        return d["end"]["sum_received"]["bits_per_second"] / 8e6
    except (TypeError, KeyError):
        return None


def r1(res, name):
    """run.sh's one-connection rounds of `name`: {round: result}."""
    got = {}
    for k, d in res.items():
        head, _, n = k.rpartition("-r")
        if head == f"r1-{name}" and n.isdigit():
            got[int(n)] = d
    return got


def r1_figures(res):
    """Per round: iperf3 and nginx MB/s, and each model's base64 wire and raw MB/s."""
    fig = {"iperf3": {r: iperf_mbps({"ref-iperf3": d}) for r, d in r1(res, "iperf3").items()},
           "nginx": {r: d["bytes"] / (d["duration_us"] / 1e6) / 1e6 for r, d in r1(res, "nginx-range64").items()}}
    for m in MODELS:
        fig[(m, "b64wire")] = {r: d.get("rx_mbps") for r, d in r1(res, f"hftp-{m}-b64m64").items()}
        fig[(m, "b64")] = {r: d.get("payload_mbps") for r, d in r1(res, f"hftp-{m}-b64m64").items()}
        fig[(m, "raw")] = {r: d.get("payload_mbps") for r, d in r1(res, f"hftp-{m}-rawm64").items()}
    return fig


def span(xs):
    """Median, min and max of the figures present, or None."""
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), min(xs), max(xs)) if xs else None


def round_ratios(a, b):
    """a / b round by round (only the rounds both have)."""
    return [a[r] / b[r] for r in a if a.get(r) and b.get(r)]


def b64_mbps(res):
    d = res.get("ref-base64")
    return d.get("base64_encode_mbps") if d else None


def rss_mib(d, key="peak", pss=False):
    s = (d or {}).get("server") or {}
    m = s.get(key) or {}
    v = m.get("pss_kib") if pss else m.get("rss_kib")
    return v / 1024 if v is not None else None


def growth_mib(d, pss=False):
    a, b = rss_mib(d, "start", pss), rss_mib(d, "peak", pss)
    return b - a if a is not None and b is not None else None


# --- formatting ----------------------------------------------------------------

def fmt(v, unit="", digits=None):
    if v is None:
        return "—"
    if digits is None:
        digits = 0 if abs(v) >= 100 else 1 if abs(v) >= 10 else 2
    s = "{:,.{}f}".format(v, digits)
    return s + (" " + unit if unit else "")


def ratio(v, ref):
    if v is None or not ref:
        return ""
    return f" ({fmt(v / ref, digits=2 if v / ref < 10 else 1)}×)"


def verdict(ok):
    return "**pass**" if ok else "**FAIL**" if ok is not None else "n/a"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


# --- SVG charts ----------------------------------------------------------------

def svg_chart(path, title, ylabel, series, refs=(), logy=False):
    """Lines over a log2 connection axis, drawn by matplotlib as SVG.
    series: name -> [(x, y)]; refs: (name, [(x, y)]) drawn dashed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lines = [(n, p, False) for n, p in series.items()] + [(n, p, True) for n, p in refs]
    lines = [(n, [(x, y) for x, y in p if y is not None], d) for n, p, d in lines]
    lines = [l for l in lines if l[1]]
    if not lines:
        return False
    # Reproducible files: the same figures give the same bytes.
    plt.rcParams["svg.hashsalt"] = "hftp"
    plt.rcParams["svg.fonttype"] = "none"
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    for name, pts, dashed in lines:
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", markersize=3, linewidth=2,
                linestyle="--" if dashed else "-", color=COLORS.get(name.split()[0], "#000"), label=name)
    xs = sorted({x for _, pts, _ in lines for x, _ in pts})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(xs))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(v)}"))
    if logy:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v) if v else "0"))
    ax.grid(True, color="#e5e5e5")
    ax.set_title(title, loc="left", fontweight="bold")
    ax.set_xlabel("connections")
    ax.set_ylabel(ylabel)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return True


# --- the document ----------------------------------------------------------------
# One function per section: each takes the figures it needs and returns the
# section's lines (a table is one line holding its newlines); build() puts
# them in order.

def hftp(res, m, wl, c):
    """One `hftp bench` result of the suite: model m, workload wl, c connections."""
    return res.get(f"hftp-{m}-{wl}-c{c}")


def py(res, k):
    """One result of the Python baseline."""
    return res.get("py-" + k)


def per_cpu(d, key):
    """A result's figure per CPU-second of the server."""
    if not d:
        return None
    cpu = (d.get("server") or {}).get("cpu_s")
    return d[key] * d["elapsed_s"] / cpu if cpu else None


def intro():
    return [
        "# Benchmarks",
        "",
        ("Generated by `bench/run.sh` (tables and charts by `bench/report.py` from the raw JSON in "
         "`bench/out/results/`); the analysis at the end is `bench/notes.md`. Do not edit the tables by hand: "
         "run the suite again."),
        "",
    ]


def machine_and_run(machine):
    return [
        "## Machine and run",
        "",
        table(["", ""], [
            ["CPU", "{}, {} logical cores (`nproc`)".format(machine.get("cpu", "?"), machine.get("nproc", "?"))],
            ["kernel", machine.get("kernel", "?")],
            ["memory", "{} GiB".format(machine.get("mem_gib", "?"))],
            ["load average", "{} at start, {} at end (the cores are shared with other work: see the notes)".format(
                " ".join(machine.get("loadavg_start", [])), " ".join(machine.get("loadavg_end", [])))],
            ["suite time", "{} s".format(machine.get("suite_seconds", "?"))],
            ["tools", "; ".join(machine.get(k, "") for k in ("rustc", "nginx", "wrk", "iperf3", "python"))],
        ]),
        "",
        ("Everything runs on loopback (127.0.0.1); client and server share the same cores. Each load runs "
         "for a fixed time (`DUR`, 3 s by default) after its connections are open; requests are not pipelined "
         "(one in flight per connection, like `wrk`) unless stated. Files: `k1` (1 KiB), `m64` (64 MiB), "
         "`g1` (1 GiB), random bytes, in the page cache. MB = 10^6 bytes. Ratios in parentheses are to the "
         "reference named in the table, measured in the same run."),
        "",
        ("Reproduce: `bash bench/run.sh` (installs nginx, wrk, iperf3 with apt-get when missing, builds "
         "`hftp` in release mode once, about 20 minutes); `QUICK=1 bash bench/run.sh` for a 2-minute smoke run. "
         "One load by hand: `hftp serve -d DIR -p 19500 -a 127.0.0.1 --model poll &` then "
         "`hftp bench 127.0.0.1:19500 metadata:k1 -c 64 -d 10 --server-pid $!`."),
        "",
    ]


def references(res, C):
    rows = [["iperf3, 1 TCP stream over loopback (the wire limit)", fmt(iperf_mbps(res), "MB/s")],
            ["base64 encode, base64-simd, one core (`hftp bench --base64-speed`)", fmt(b64_mbps(res), "MB/s of input")]]
    for c in C:
        rows.append([f"nginx, 1 KiB file, `wrk -c {c}`", "{} req/s, p99 {}".format(fmt(nginx_rps(res, c)), fmt(nginx_p99_ms(res, c), "ms"))])
    for c in C:
        if nginx_mbps(res, c) is not None:
            rows.append([f"nginx, 64 MiB `Range: bytes=0-67108863` (206, sendfile), `wrk -c {c}`", fmt(nginx_mbps(res, c), "MB/s")])
    return ["## References (same run, same files)", "", table(["reference", "result"], rows), ""]


# The targets: one function per row, giving model m's cell.

def target_cell(v, ref, ok, unit):
    return f"{fmt(v, unit)}{ratio(v, ref)} {verdict(ok)}" if v is not None else "—"


def b64_vs_nginx(res, m):
    b, ngr1 = (hftp(res, m, "b64m64", 1) or {}).get("payload_mbps"), nginx_mbps(res, 1)
    return target_cell(b, ngr1, b >= 0.5 * ngr1 if b is not None and ngr1 else None, "MB/s")


def b64_wire_mbps(res, m):
    """A base64 slice's bytes on the wire: the payload × 4/3 (plus the head)."""
    return (hftp(res, m, "b64m64", 1) or {}).get("rx_mbps")


def rounds_cell(fig, key, ref, need):
    """A one-connection target from the rounds: the median figure, the median
    ratio to the reference of the same round [its min–max], pass/fail."""
    v, r = span(fig.get(key, {}).values()), span(round_ratios(fig.get(key, {}), fig.get(ref, {})))
    if not v or not r:
        return None
    return "{} ({:.2f}× [{:.2f}–{:.2f}]) {}".format(fmt(v[0], "MB/s"), r[0], r[1], r[2], verdict(r[0] >= need))


def b64_wire_vs_iperf(res, m):
    cell = rounds_cell(r1_figures(res), (m, "b64wire"), "iperf3", 0.75)
    if cell:
        return cell
    w, ip = b64_wire_mbps(res, m), iperf_mbps(res)
    return target_cell(w, ip, w >= 0.75 * ip if w is not None and ip else None, "MB/s")


def big_slice_growth(res, m):
    gr = growth_mib(res.get(f"hftp-{m}-b64g1"), pss=(m == "fork"))
    return "{}{} {}".format(fmt(gr, "MiB"), " (PSS)" if m == "fork" else "", verdict(gr <= 16 if gr is not None else None)) if gr is not None else "—"


def raw_vs_nginx(res, m):
    cell = rounds_cell(r1_figures(res), (m, "raw"), "nginx", 1.0)
    if cell:
        return cell
    rw, ngr1 = (hftp(res, m, "rawm64", 1) or {}).get("payload_mbps"), nginx_mbps(res, 1)
    return target_cell(rw, ngr1, rw >= ngr1 if rw is not None and ngr1 else None, "MB/s")


def metadata_vs_nginx(res, m):
    ng1 = nginx_rps(res, 64)
    md = hftp(res, m, "metadata", 64)
    mr = (md or {}).get("rps")
    p99 = (md or {}).get("latency_us", {}).get("p99")
    return "{}{}, p99 {} {}".format(fmt(mr, "req/s"), ratio(mr, ng1), fmt(p99 / 1000 if p99 else None, "ms"),
                                    verdict(mr >= ng1 if mr is not None and ng1 else None)) if md else "—"


def metadata_vs_python(res, m):
    mr, pymeta = (hftp(res, m, "metadata", 64) or {}).get("rps"), (py(res, "metadata-c64") or {}).get("rps")
    return target_cell(mr, pymeta, mr >= 5 * pymeta if mr is not None and pymeta else None, "req/s")


def idle_held(res, m):
    hd = res.get(f"hftp-{m}-hold")
    if not (hd and hd.get("hold")):
        return "—"
    h = hd["hold"]
    held = rss_mib(hd, "end", pss=(m == "fork"))
    ok = h["answered_quit"] == h["conns"] and held is not None and held <= 64
    need = m in ("async", "poll", "uring")
    return "{} conns: {}{}, {}/{} quit {}".format(
        fmt(h["conns"]), fmt(held, "MiB"), " PSS" if m == "fork" else "", h["answered_quit"], h["conns"],
        verdict(ok) if need else ("(info)" if ok else "(info: over)"))


TARGETS = [
    ("64 MiB base64 slice, 1 conn, ≥ 50% of nginx 64 MiB range", b64_vs_nginx),
    ("64 MiB base64 slice, 1 conn, wire rate (payload × 4/3) ≥ 0.75× iperf3 (the best model ≥ 0.85×: below)",
     b64_wire_vs_iperf),
    ("RSS growth during one 1 GiB base64 slice ≤ 16 MiB", big_slice_growth),
    ("raw 64 MiB slice, 1 conn, ≥ 1.0× nginx", raw_vs_nginx),
    ("get_metadata, 64 conns, ≥ nginx 1 KiB at 64 conns (p99)", metadata_vs_nginx),
    ("get_metadata, 64 conns, ≥ 5× Python", metadata_vs_python),
    ("idle connections held: RSS ≤ 64 MiB (async, poll, uring: 10,000), all answer quit", idle_held),
]


def best_b64_wire(res):
    """The best model's base64 wire rate against iperf3's one stream (target ≥ 0.85×)."""
    fig = r1_figures(res)
    best = [(span(round_ratios(fig[(m, "b64wire")], fig["iperf3"])), m) for m in MODELS]
    best = [(r, m) for r, m in best if r]
    if best:
        r, m = max(best)
        line = (f"Best base64 wire rate at 1 connection: `{m}`, {r[0]:.2f}× [{r[1]:.2f}–{r[2]:.2f}] of iperf3's "
                f"one stream in the same rounds (target ≥ 0.85×) {verdict(r[0] >= 0.85)}.")
        return [line, ""]
    got = [(b64_wire_mbps(res, m), m) for m in MODELS if b64_wire_mbps(res, m) is not None]
    ip = iperf_mbps(res)
    if not got or not ip:
        return []
    w, m = max(got)
    line = (f"Best base64 wire rate at 1 connection: `{m}`, {fmt(w, 'MB/s')}{ratio(w, ip)} of iperf3's "
            f"{fmt(ip, 'MB/s')} (target ≥ 0.85×) {verdict(w >= 0.85 * ip)}.")
    return [line, ""]


def targets(res):
    rows = [[label] + [cell(res, m) for m in MODELS] for label, cell in TARGETS]
    return [
        "## Targets",
        "",
        ("Each cell: the figure, its ratio to the target's reference, pass/fail. The targets are for the "
         "server; every model is shown."),
        "",
        table(["target"] + MODELS, rows),
        "",
        "References for the ratios: nginx 64 MiB range at 1 conn = {}; iperf3, one stream = {}; "
        "nginx 1 KiB at 64 conns = {} (p99 {}); Python get_metadata at 64 conns = {}.".format(
            fmt(nginx_mbps(res, 1), "MB/s"), fmt(iperf_mbps(res), "MB/s"),
            fmt(nginx_rps(res, 64), "req/s"), fmt(nginx_p99_ms(res, 64), "ms"),
            fmt((py(res, "metadata-c64") or {}).get("rps"), "req/s")),
        "",
    ] + best_b64_wire(res)


def one_connection_rounds(res):
    """run.sh's rounds of the one-connection loads, with their references."""
    fig = r1_figures(res)
    if not fig["iperf3"] and not fig["nginx"]:
        return []
    n = max(len(v) for v in fig.values())

    def row(label, runs):
        v = span(runs.values())
        return [label, fmt(v[0], "MB/s") if v else "—", f"{fmt(v[1])}–{fmt(v[2])}" if v else "—",
                ", ".join(fmt(runs[r]) for r in sorted(runs))]
    rows = [row("iperf3, one stream", fig["iperf3"]), row("nginx 64 MiB range (`wrk -c 1`)", fig["nginx"])]
    for m in MODELS:
        rows.append(row(f"`{m}` raw 64 MiB", fig[(m, "raw")]))
        rows.append(row(f"`{m}` base64 64 MiB, wire (payload × 4/3)", fig[(m, "b64wire")]))
    ratios = []
    for m in MODELS:
        for label, key, ref in ((f"`{m}` raw / nginx", (m, "raw"), "nginx"),
                                (f"`{m}` base64 wire / iperf3", (m, "b64wire"), "iperf3")):
            r = span(round_ratios(fig[key], fig[ref]))
            ratios.append([label, f"{r[0]:.2f}×" if r else "—", f"{r[1]:.2f}–{r[2]:.2f}×" if r else "—"])
    for label, key in (("uring / poll, raw", "raw"), ("uring / poll, base64", "b64")):
        r = span(round_ratios(fig[("uring", key)], fig[("poll", key)]))
        ratios.append([label, f"{r[0]:.2f}×" if r else "—", f"{r[1]:.2f}–{r[2]:.2f}×" if r else "—"])
    return [
        "### One connection, in rounds",
        "",
        (f"{n} rounds; in each, iperf3, nginx and every model back to back on one connection "
         "(a change in what else runs on the cores hits them alike). Medians and ranges; the ratios are "
         "taken round by round, then their median."),
        "",
        table(["load", "median", "range", "round by round (MB/s)"], rows),
        "",
        table(["ratio", "median", "range"], ratios),
        "",
    ]


def per_server_cpu(res):
    """Efficiency: per CPU-second of the server, immune to what else runs on the cores."""
    rows = []
    for label, k, key, unit in (("64 MiB base64, 1 conn", "b64m64-c1", "payload_mbps", "MB"),
                                ("get_metadata, 64 conns", "metadata-c64", "rps", "req")):
        pv = per_cpu(py(res, k), key)
        row = [label + f" ({unit} per CPU-s)"]
        for m in MODELS:
            wl, c = k.rsplit("-c", 1)
            v = per_cpu(hftp(res, m, wl, int(c)), key)
            row.append(f"{fmt(v)}{ratio(v, pv)}")
        row.append(fmt(pv))
        rows.append(row)
    return [
        "### Per server CPU-second",
        "",
        ("The cores are shared with other work during the run (see the load average), so the server gets "
         "a varying share of them. Dividing by the CPU time the server actually used (from /proc, the "
         "whole process tree) gives a figure that does not depend on that share: work per CPU-second."),
        "",
        table(["load"] + MODELS + ["Python"], rows),
        "",
        "Ratios here are to Python per CPU-second.",
        "",
    ]


def versus(label, v_u, v_p, need, unit):
    ok = v_u >= need * v_p if v_u is not None and v_p else None
    return [label, fmt(v_p, unit), f"{fmt(v_u, unit)}{ratio(v_u, v_p)}", verdict(ok)]


def uring_vs_poll(res):
    """Issue 12: completion-based I/O against the readiness loop, same run."""
    rows = [
        versus("get_metadata, 64 conns, req per server CPU-s ≥ 1.2× poll",
               per_cpu(hftp(res, "uring", "metadata", 64), "rps"), per_cpu(hftp(res, "poll", "metadata", 64), "rps"), 1.2, ""),
    ]
    fig = r1_figures(res)
    for label, key, wl in (("raw 64 MiB slice, 1 conn ≥ poll", "raw", "rawm64"),
                           ("base64 64 MiB slice, 1 conn ≥ poll", "b64", "b64m64")):
        r = span(round_ratios(fig[("uring", key)], fig[("poll", key)]))
        if r:
            u, p_ = span(fig[("uring", key)].values()), span(fig[("poll", key)].values())
            rows.append([label + " (rounds: median ratio [range])", fmt(p_[0], "MB/s"),
                         f"{fmt(u[0], 'MB/s')} ({r[0]:.2f}× [{r[1]:.2f}–{r[2]:.2f}])", verdict(r[0] >= 1.0)])
        else:
            rows.append(versus(label, (hftp(res, "uring", wl, 1) or {}).get("payload_mbps"),
                               (hftp(res, "poll", wl, 1) or {}).get("payload_mbps"), 1.0, "MB/s"))
    hu = res.get("hftp-uring-hold")
    hp = res.get("hftp-poll-hold")
    held_u = rss_mib(hu, "end") if hu and hu.get("hold") else None
    held_p = rss_mib(hp, "end") if hp and hp.get("hold") else None
    conns_u = hu["hold"]["conns"] if hu and hu.get("hold") else None
    rows.append([f"idle connections ({fmt(conns_u)}) held in ≤ 64 MiB", fmt(held_p, "MiB"), fmt(held_u, "MiB"),
                 verdict(held_u <= 64 if held_u is not None else None)])
    return [
        "### uring against poll",
        "",
        "The targets of `--model uring`, measured in the same run as `poll`; ratios are uring / poll.",
        "",
        table(["target", "poll", "uring", ""], rows),
        "",
    ]


def load_table(res, C, title, wl, key, unit, ref_fn, ref_name, note=""):
    """One workload: every model at every connection count, against a reference."""
    lines = ["### " + title, ""]
    if note:
        lines += [note, ""]
    rows = []
    for m in MODELS:
        row = [m]
        for c in C:
            d = hftp(res, m, wl, c)
            v = d.get(key) if d else None
            if v is not None and key == "rps" and d.get("conns_served", c) < c:
                row.append("{}{}, {}/{} served".format(fmt(v), ratio(v, ref_fn(c)), d["conns_served"], c))
            else:
                row.append(f"{fmt(v)}{ratio(v, ref_fn(c))}")
        rows.append(row)
    rows.append([f"*{ref_name}*"] + [fmt(ref_fn(c)) for c in C])
    return lines + [table([f"model \\ conns ({unit})"] + [str(c) for c in C], rows), ""]


def throughput(res, C):
    return (["## Throughput by model and connections", ""]
            + load_table(res, C, "get_metadata (req/s)", "metadata", "rps", "req/s", lambda c: nginx_rps(res, c),
                         "nginx 1 KiB file",
                         "Ratio: to nginx serving the 1 KiB file with `wrk` at the same connection count.")
            + load_table(res, C, "get_slice k1 0 1024, base64 (req/s)", "slice1k", "rps", "req/s",
                         lambda c: nginx_rps(res, c), "nginx 1 KiB file")
            + load_table(res, C, "get_slice m64 0 67108864, base64 (payload MB/s)", "b64m64", "payload_mbps", "MB/s",
                         lambda c: nginx_mbps(res, c), "nginx 64 MiB range",
                         "Payload: file bytes delivered (decoded), counted as they arrive, so runs where few 64 MiB "
                         "replies complete still measure the rate; the wire carries 4/3 as many bytes.")
            + load_table(res, C, "get_slice m64 0 67108864 raw (payload MB/s)", "rawm64", "payload_mbps", "MB/s",
                         lambda c: nginx_mbps(res, c), "nginx 64 MiB range"))


def metadata_latency(res, C):
    rows = []
    for m in MODELS:
        row = [m]
        for c in C:
            d = hftp(res, m, "metadata", c)
            lat = (d or {}).get("latency_us") or {}
            row.append("{} / {}".format(fmt(lat.get("p50", 0) / 1000), fmt(lat.get("p99", 0) / 1000)) if d else "—")
        rows.append(row)
    rows.append(["*nginx 1 KiB*"] + ["{} / {}".format(fmt(((res.get(f"ref-nginx-k1-c{c}") or {}).get("latency_us") or {}).get("p50", 0) / 1000),
                                                   fmt(nginx_p99_ms(res, c))) for c in C])
    return ["### get_metadata latency p50 / p99 (ms)", "",
            table(["model \\ conns"] + [str(c) for c in C], rows), ""]


def memory_under_load(res, C):
    lines = [
        "## Server memory",
        "",
        ("Peak VmRSS of the server's process tree (summed over the fork model's children, so shared pages "
         "count once per process there), sampled every 50 ms during each load, MiB."),
        "",
    ]
    for wl, title in (("metadata", "during get_metadata"), ("b64m64", "during 64 MiB base64 slices")):
        rows = []
        for m in MODELS:
            rows.append([m] + [fmt(rss_mib(hftp(res, m, wl, c))) for c in C])
        lines += [f"**{title}**", "", table(["model \\ conns"] + [str(c) for c in C], rows), ""]
    return lines


def memory_big_slice(res):
    rows = []
    for m in MODELS + ["python"]:
        d = res.get(f"hftp-{m}-b64g1") if m != "python" else py(res, "b64g1")
        if not d:
            continue
        rows.append([m, fmt(rss_mib(d, "start")), fmt(rss_mib(d, "peak")), fmt(growth_mib(d)),
                     fmt(growth_mib(d, pss=True)) if rss_mib(d, "start", True) is not None else "—",
                     fmt(d.get("payload_mbps"), "MB/s")])
    return ["**One 1 GiB base64 slice on one connection** (memory must not grow with the slice size)", "",
            table(["server", "RSS before", "RSS peak", "growth", "PSS growth", "throughput"], rows), ""]


def memory_idle(res):
    rows = []
    for m in MODELS + ["python"]:
        d = res.get(f"hftp-{m}-hold") if m != "python" else py(res, "hold")
        if not d or not d.get("hold"):
            continue
        h = d["hold"]
        held, start = rss_mib(d, "end"), rss_mib(d, "start")
        pss_held = rss_mib(d, "end", True)
        per = (held - start) * 1024 / max(h["connected"], 1) if held is not None and start is not None else None
        rows.append([m, fmt(h["conns"]), "{:.3f} s".format(h["connect_s"]), fmt(start), fmt(held),
                     fmt(pss_held) if pss_held is not None else "—", fmt(per, "KiB"),
                     fmt(rss_mib(d, "peak")), "{}/{}".format(h["answered_quit"], h["conns"]), "{:.3f} s".format(h["quit_s"])])
    return ["**Idle connections held** (`hftp bench --hold N -d 5`: connect N, hold 5 s idle, then `quit` on each)", "",
            table(["server", "conns", "time to connect all", "RSS before", "RSS held", "PSS held", "per conn",
                   "RSS peak (incl. quit)", "answered quit", "quit time"], rows), ""]


def python_baseline(res):
    rows = []
    for k, label in (("metadata-c1", "get_metadata, 1 conn"), ("metadata-c16", "get_metadata, 16 conns"),
                     ("metadata-c64", "get_metadata, 64 conns"), ("slice1k-c64", "1 KiB base64 slice, 64 conns"),
                     ("b64m64-c1", "64 MiB base64 slice, 1 conn"), ("b64g1", "1 GiB base64 slice, 1 conn")):
        d = py(res, k)
        if not d:
            continue
        hk = {"metadata-c1": ("metadata", 1), "metadata-c16": ("metadata", 16), "metadata-c64": ("metadata", 64),
              "slice1k-c64": ("slice1k", 64), "b64m64-c1": ("b64m64", 1)}.get(k)
        big = "m64" in k or "g1" in k
        v = d["payload_mbps"] if big else d["rps"]
        if hk:
            hv = (hftp(res, "async", *hk) or {}).get("payload_mbps" if big else "rps")
        else:
            hv = (res.get("hftp-async-b64g1") or {}).get("payload_mbps")
        rows.append([label, fmt(v, "MB/s" if big else "req/s"), fmt(hv, "MB/s" if big else "req/s"),
                     fmt(hv / v, "×") if hv and v else "—", fmt(rss_mib(d))])
    return [
        "## The typical implementation (Python baseline)",
        "",
        ("`bench/baselines/hftp_server.py`: thread per connection, whole slice read and encoded in memory with "
         "`base64.b64encode`, as the course asks; it passes `hftp check` (160 of 160 cases run as root). Same "
         "files, same generator."),
        "",
        table(["load", "Python", "hftp async", "hftp / Python", "Python peak RSS MiB"], rows),
        "",
    ]


def generator(res):
    rows = []
    for k, label in (("gen-async-metadata-c64-t1", "1 thread"), ("gen-async-metadata-c64-t2", "2 threads"),
                     ("gen-async-metadata-c64-t4", "4 threads"), ("gen-async-metadata-c64-k16", "2 threads, pipeline 16"),
                     ("hftp-async-b64m64-c1", "64 MiB base64, 1 conn"), ("hftp-async-rawm64-c1", "64 MiB raw, 1 conn")):
        d = res.get(k)
        if not d:
            continue
        big = "m64" in k
        el = d["elapsed_s"] or 1
        scpu = (d.get("server") or {}).get("cpu_s")
        rows.append([label, fmt(d["payload_mbps"] if big else d["rps"], "MB/s" if big else "req/s"),
                     fmt(d["latency_us"]["p99"] / 1000, "ms"),
                     "{:.0f}%".format(100 * d["generator_cpu_s"] / el), f"{100 * scpu / el:.0f}%" if scpu is not None else "—"])
    lines = [
        "## Is the generator the bottleneck?",
        "",
        ("The same load (get_metadata, 64 connections, async server) from 1, 2 and 4 generator threads, and "
         "with 16 requests pipelined per connection. If the generator limited the result, more generator "
         "threads would raise it; and its CPU time should stay below the server's."),
        "",
        table(["generator", "result", "p99", "generator CPU (of one core)", "server CPU"], rows),
        "",
    ]
    extra = [(k, d) for k, d in sorted(res.items()) if k.startswith("extra-")]
    if extra:
        lines += ["Other workloads (async server): " + "; ".join(
            "`{}` {} conns: {} req/s, p99 {}, {} errors".format(d["workload"], d["conns"], fmt(d["rps"]),
                                                              fmt(d["latency_us"]["p99"] / 1000, "ms"), d["errors"])
            for _, d in extra) + ".", ""]
    return lines


def object_store_table(s3):
    d, r = s3["direct_get_mbps"], s3["hftp_raw_mbps"]
    return table(["load", "direct to Garage", "through hftp", "hftp / direct", "target"], [
        ["256 MiB, one ranged GET vs a raw slice", fmt(d, "MB/s"), fmt(r, "MB/s"), ratio(r, d).strip(" ()"),
         f"≥ 0.8× {verdict(r >= 0.8 * d if r and d else None)}"],
    ] + ([
        ["the same raw slice streamed through object_store (`--s3-splice false`)", fmt(d, "MB/s"),
         fmt(s3["hftp_streamed_raw_mbps"], "MB/s"), ratio(s3["hftp_streamed_raw_mbps"], d).strip(" ()"),
         "(before splicing)"],
    ] if "hftp_streamed_raw_mbps" in s3 else []) + [
        ["the same GET through HAProxy (tcp mode): one extra hop, no HFTP", fmt(d, "MB/s"),
         fmt(s3["relay_get_mbps"], "MB/s") if s3.get("relay_get_mbps") else "—",
         ratio(s3["relay_get_mbps"], d).strip(" ()") if s3.get("relay_get_mbps") else "—", "(reference)"],
        ["256 MiB, as a base64 slice (checked against the store's CRC32)", "—", fmt(s3["hftp_b64_mbps"], "MB/s of file"),
         ratio(s3["hftp_b64_mbps"], d).strip(" ()"), ""],
    ] + ([
        ["the same bytes, an object with no CRC kept (checked against its ETag's MD5)", "—",
         fmt(s3["hftp_b64_md5_mbps"], "MB/s of file"), ratio(s3["hftp_b64_md5_mbps"], d).strip(" ()"), ""],
    ] if "hftp_b64_md5_mbps" in s3 else []) + [
        ["HEAD vs get_metadata, 16 in parallel", fmt(s3["direct_head_rps"], "req/s"),
         fmt(s3["hftp_metadata_rps"], "req/s"), ratio(s3["hftp_metadata_rps"], s3["direct_head_rps"]).strip(" ()"), ""],
        ["one HEAD vs one get_metadata, sequential (mean)", fmt(s3["direct_head_latency_ms"], "ms"),
         fmt(s3["hftp_metadata_latency_ms"], "ms"), per_request(s3["hftp_metadata_latency_ms"] - s3["direct_head_latency_ms"]), ""],
    ] + ([
        ["one 1 KiB ranged GET vs one 1 KiB raw slice, sequential (mean)",
         fmt(s3["direct_small_get_latency_ms"], "ms"), fmt(s3["hftp_small_slice_latency_ms"], "ms"),
         per_request(s3["hftp_small_slice_latency_ms"] - s3["direct_small_get_latency_ms"]), ""],
    ] if "direct_small_get_latency_ms" in s3 else []))


def object_store_runs(s3):
    return ("Direct GET runs: {} MB/s (first byte after {}: the store's own latency, paid by every "
            "path). Through HAProxy / direct, round by round: {}. hftp raw runs: {} MB/s. Raw / direct, round by round: {}. "
            "Streamed raw / direct, round by round: {}. Base64 (CRC) / raw, round by round: {}. "
            "hftp server peak RSS during the slices: {}. Failed hftp requests: {}.".format(
                ", ".join(fmt(v) for v in s3["direct_get_runs_mbps"]),
                fmt(s3["direct_get_ttfb_ms"], "ms") if s3.get("direct_get_ttfb_ms") else "—",
                ", ".join(f"{v:.2f}×" for v in s3.get("relay_ratio_runs", [])) or "—",
                ", ".join(fmt(v) for v in s3.get("hftp_raw_runs_mbps", [])) or "—",
                ", ".join(f"{v:.2f}×" for v in s3.get("raw_ratio_runs", [])) or "—",
                ", ".join(f"{v:.2f}×" for v in s3.get("streamed_ratio_runs", [])) or "—",
                ", ".join(f"{v:.2f}×" for v in s3.get("b64_raw_ratio_runs", [])) or "—",
                fmt(s3["hftp_server_rss_peak_mib"], "MiB"), s3["hftp_errors"]))


def object_store_cpu(cpu):
    names = {"direct": "direct GET", "relay": "GET through HAProxy", "raw": "hftp raw slice (spliced)",
             "streamed": "hftp raw slice (streamed)", "b64": "hftp base64 slice (CRC32 checked)",
             "b64md5": "hftp base64 slice (MD5 checked)"}
    return [
        ("CPU time one 256 MiB transfer costs, by part (seconds, medians of user + system time). "
         "A transfer lasts 0.5 to 0.9 s, so none fills the two cores: the hop costs CPU (a second "
         "receive and send) and, as much, latency (hand-offs between threads on cores the store "
         "uses too)."),
        "",
        table(["transfer", "Garage (3 nodes)", "relay", "client", "total"], [
            [names[k]] + [f"{cpu[k][part]:.2f}" for part in ("garage", "relay", "client", "total")]
            for k in names if k in cpu]),
        "",
    ]


def object_store_targets(s3):
    """The relay targets, each on the median of its per-round ratios (the two
    transfers of a round share the machine's state), with their range; the
    ratio of the medians where the rounds were not kept."""
    raw, relay, b64 = s3.get("hftp_raw_mbps"), s3.get("relay_get_mbps"), s3.get("hftp_b64_mbps")

    def cell(a, b, runs_a, runs_b, need):
        per_round = [x / y for x, y in zip(s3.get(runs_a, []), s3.get(runs_b, [])) if y]
        if per_round:
            r = span(per_round)
            return "{:.2f}× [{:.2f}–{:.2f}]".format(*r), verdict(r[0] >= need)
        return ratio(a, b).strip(" ()") or "—", verdict(a >= need * b if a and b else None)

    rows = [
        ["spliced raw slice ≥ 1.0× the same GET through HAProxy (the same hop)", fmt(raw, "MB/s"), fmt(relay, "MB/s"),
         *cell(raw, relay, "hftp_raw_runs_mbps", "relay_get_runs_mbps", 1.0)],
        ["base64 slice (file bytes, CRC32 checked) ≥ 0.9× the spliced raw slice", fmt(b64, "MB/s"), fmt(raw, "MB/s"),
         *cell(b64, raw, "hftp_b64_runs_mbps", "hftp_raw_runs_mbps", 0.9)],
    ]
    return [table(["target", "hftp (median)", "reference (median)", "per-round ratio, median [min–max]", ""], rows), ""]


def object_store(s3):
    """bench/object_store.sh's results; nothing when it did not run."""
    if not s3:
        return []
    lines = [
        "## Object store (Garage)",
        "",
        "`bench/object_store.sh`: a 3-node Garage cluster (`replication_factor = 3`) on loopback, one "
        "256 MiB object (put twice: with a CRC32 the store keeps, and without, its ETag's MD5 the only "
        "promise), and `hftp serve --storage s3://...` nodes talking to the same Garage node "
        "as the direct requests (curl with `--aws-sigv4`): one as deployed (raw slices spliced from the "
        "store's socket), one with `--s3-splice false` (raw slices streamed through `object_store`). "
        "The GET, the same GET through HAProxy, both raw slices and both base64 slices run one of each per "
        "round, in an order that rotates round by round, {} rounds (a change in the machine's load hits "
        "them all alike); medians; one connection unless stated.".format(s3.get("rounds", 3)),
        "",
        object_store_table(s3),
        "",
    ] + object_store_targets(s3) + [
        object_store_runs(s3),
        "",
    ]
    if s3.get("cpu_s"):
        lines += object_store_cpu(s3["cpu_s"])
    return lines


def tls_section(tls):
    """bench/tls.sh: HFTP over TLS against plain HFTP and nginx over TLS."""
    if not tls:
        return []
    loads = tls.get("loads", {})

    def cell(key, unit):
        d = loads.get(key)
        if not d:
            return "—", None
        return "{} [{}–{}]".format(fmt(d["median"], unit), fmt(d["min"]), fmt(d["max"])), d["median"]

    rows = []
    for m in tls.get("models", []):
        for label, wl, unit, ngx, need in (
                ("get_metadata, 64 conns (req/s)", "metadata-c64", "", "nginx-tls-k1-c64", 1.0),
                ("64 MiB raw slice, 1 conn (MB/s)", "rawm64-c1", "", "nginx-tls-range64-c1", 0.9),
                ("64 MiB base64 slice, 1 conn (payload MB/s)", "b64m64-c1", "", None, None)):
            t_text, t = cell(f"hftp-tls-{m}-{wl}", unit)
            p_text, p = cell(f"hftp-plain-{m}-{wl}", unit)
            n_text, n = cell(ngx, unit) if ngx else ("—", None)
            vs_plain = fmt(t / p, digits=2) + "×" if t and p else "—"
            if ngx and t and n:
                target = f"{fmt(t / n, digits=2)}× (≥ {need}×) {verdict(t / n >= need)}"
            else:
                target = "—"
            rows.append([f"`{m}`", label, t_text, p_text, vs_plain, n_text, target])
    return ["## TLS (`bench/tls.sh`)", "",
            "HFTP over TLS 1.3 (rustls, `--tls-cert`) against the same binary in clear text and against "
            "nginx over TLS 1.3 (OpenSSL) serving the same files, {} rounds in one run, medians "
            "[min–max]. Ciphers negotiated: hftp {}, nginx {}. No kernel TLS on this machine's kernel: "
            "both servers encrypt in user space (hftp logs `kernel_tls=false`), so raw slices lose "
            "sendfile/splice on both sides. nginx's get_metadata reference is a 1 KiB GET; its raw "
            "reference, one 64 MiB ranged GET.".format(
                tls.get("rounds"), tls.get("hftp_cipher") or "?", tls.get("nginx_cipher") or "?"), "",
            table(["model", "load", "TLS", "plain", "TLS / plain", "nginx TLS", "TLS / nginx TLS (target)"], rows),
            ""]


def before_after(ab):
    """bench/ab.sh's last run, when there is one: two builds side by side, rounds interleaved."""
    if not ab:
        return []
    rows = [[r["load"], r["model"], fmt(r["old"]), fmt(r["new"]), ratio(r["new"], r["old"]).strip(" ()") or "—",
             r["spread"], fmt(r["old_cpu"]), fmt(r["new_cpu"]), ratio(r["new_cpu"], r["old_cpu"]).strip(" ()") or "—"]
            for r in ab["rows"]]
    return [
        "## Before and after (`bench/ab.sh`)",
        "",
        ("Old: {}; new: {}. Each model and load, old then new, {} rounds interleaved, {} s a load, the same "
         "load generator (new's `hftp bench`); medians. The spread (half the range of a build's runs over "
         "their median) is the noise a ratio sits in. Per CPU-second: the figure divided by the server's "
         "CPU time, which does not depend on the share of the cores it got.").format(
            ab.get("old", "?"), ab.get("new", "?"), ab.get("rounds", "?"), ab.get("dur", "?")),
        "",
        table(["load", "model", "old", "new", "new/old", "spread old / new", "old per CPU-s", "new per CPU-s",
               "new/old per CPU-s"], rows),
        "",
    ]


def errors(res):
    errs = [(k, d) for k, d in sorted(res.items()) if isinstance(d, dict) and "workload" in d and d.get("errors")]
    lines = ["## Errors", ""]
    if errs:
        for k, d in errs:
            lines.append("- `{}`: {}".format(k, ", ".join("{} × {} ({})".format(kind, e["count"], e["example"]) for kind, e in d["error_kinds"].items())))
    else:
        lines.append("No request failed in any run (every reply was decoded and validated in full).")
    return lines + [""]


def charts(res, C, charts_dir, rel_charts):
    """Draws the SVG charts into charts_dir; the section links those drawn."""
    made = []
    for wl, key, title, unit, reff in (
            ("metadata", "rps", "get_metadata throughput", "requests/s", lambda c: nginx_rps(res, c)),
            ("slice1k", "rps", "1 KiB base64 slice throughput", "requests/s", lambda c: nginx_rps(res, c)),
            ("b64m64", "payload_mbps", "64 MiB base64 slice throughput", "payload MB/s", lambda c: nginx_mbps(res, c)),
            ("rawm64", "payload_mbps", "64 MiB raw slice throughput", "payload MB/s", lambda c: nginx_mbps(res, c))):
        series = {m: [(c, (hftp(res, m, wl, c) or {}).get(key)) for c in C] for m in MODELS}
        refs = [("nginx", [(c, reff(c)) for c in C])]
        name = f"throughput-{wl}.svg"
        if svg_chart(os.path.join(charts_dir, name), title + " vs connections", unit, series, refs):
            made.append((title, name))
    for wl, title in (("metadata", "server RSS during get_metadata"), ("b64m64", "server RSS during 64 MiB base64 slices")):
        series = {m: [(c, rss_mib(hftp(res, m, wl, c))) for c in C] for m in MODELS}
        name = f"rss-{wl}.svg"
        if svg_chart(os.path.join(charts_dir, name), title + " (MiB, log scale)", "peak RSS MiB", series, logy=True):
            made.append((title, name))
    lines = ["## Charts", ""]
    for title, name in made:
        lines += [f"![{title}]({rel_charts}/{name})", ""]
    return lines


def build(res, machine, charts_dir, md_path, notes):
    C = conns_of(res)
    rel_charts = os.path.relpath(charts_dir, os.path.dirname(os.path.abspath(md_path)))
    lines = (intro() + machine_and_run(machine) + references(res, C) + targets(res) + one_connection_rounds(res)
             + per_server_cpu(res)
             + uring_vs_poll(res) + throughput(res, C) + metadata_latency(res, C) + memory_under_load(res, C)
             + memory_big_slice(res) + memory_idle(res) + python_baseline(res) + generator(res)
             + object_store(res.get("s3")) + tls_section(res.get("tls")) + before_after(res.get("ab")) + errors(res) + charts(res, C, charts_dir, rel_charts))
    if notes:
        lines += [notes.rstrip(), ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("--md", default="BENCHMARKS.md")
    ap.add_argument("--charts", default="bench/charts")
    ap.add_argument("--notes", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md"))
    a = ap.parse_args()
    res, machine = load(a.out)
    notes = ""
    if os.path.exists(a.notes):
        with open(a.notes) as f:
            notes = f.read()
    doc = build(res, machine, a.charts, a.md, notes)
    with open(a.md, "w") as f:
        f.write(doc)
    print(f"wrote {a.md} ({len(res)} results)")


if __name__ == "__main__":
    main()
