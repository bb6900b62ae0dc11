#!/usr/bin/env python3
"""Broker benchmark: durable ingest against a trivial-server ceiling, and delivery latency.

    python3 bench/events.py [--seconds 10] [--connections 64,256] [--reps 3] [--rate 1000,5000]

In one run, with one fresh release daemon on a temporary home (stopped and removed at the end,
also on failure):

- ceiling: wrk POSTs the same binary-mode CloudEvent (about 200 bytes of JSON data) to
  bench/sink, a trivial hyper server that answers 202 at once: what this machine's loopback,
  HTTP/1.1 and wrk allow. No disk.
- ingest:  the same wrk, the same script, at `/default/default` on the broker ingress, which
  answers 202 only once the event is committed (fsync) to its redb log. The two sides
  alternate, `--reps` times at each connection count; the table gives medians.
- latency: a trigger on `default` to bench/sink (a warm subscriber on the host's loopback), and
  bench/sink's `send` (Rust, open loop, 8 keep-alive connections) at each `--rate` for
  `--latency-seconds`, setting each event's `time` just before its request. Reported: the
  daemon's delivery-latency histogram (from the ingress taking the event, before its commit,
  to the subscriber's 2xx; p50/p99 linearly interpolated within its buckets, whose bounds are
  1, 2, 4, 8, 16 ms ...), the latency at the subscriber (arrival minus `time`: send to arrival,
  so it also covers the sender's request and the commit; same clock), and the sender's 202.
  Every event sent must arrive: the broker's accepted and the trigger's delivered counters,
  and the ids the subscriber saw, are compared.
- ingest with a trigger: wrk at full speed (first connection count) with that trigger delivering;
  then the time until delivery catches up.

Needs `target/release/rouse` (cargo build --release -p rouse-cli), wrk and cargo (bench/sink is
built on first use into target/bench-sink).
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SINK_MANIFEST = os.path.join(ROOT, "bench", "sink", "Cargo.toml")
SINK_TARGET = os.path.join(ROOT, "target", "bench-sink")

# About 200 bytes of JSON, the event's data.
DATA = json.dumps({
    "order": "ord-7f3a9c21", "customer": "cus-0042", "currency": "EUR", "total": 129.95,
    "items": [{"sku": "sku-1001", "qty": 2, "price": 39.99}, {"sku": "sku-2002", "qty": 1, "price": 49.97}],
    "note": "benchmark event, binary mode",
}, separators=(",", ":"))

WRK_SCRIPT = """
-- Binary-mode CloudEvents: one unique ce-id per request, the same data every time.
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local counter = 0
local prefix = "w"
function init(args)
  prefix = "w" .. tid .. "-"
end
wrk.method = "POST"
wrk.body = %s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-source"] = "/bench/wrk"
wrk.headers["ce-type"] = "dev.rouse.bench"
function request()
  counter = counter + 1
  wrk.headers["ce-id"] = prefix .. counter
  return wrk.format()
end
"""


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def machine():
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    fs = subprocess.run(["df", "--output=fstype,source", tempfile.gettempdir()], capture_output=True,
                        text=True).stdout.split("\n")[1].split()
    wrk_version = ""
    if shutil.which("wrk"):
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        wrk_version = (wrk_version.stdout + wrk_version.stderr).split("\n")[0].split("[")[0].strip() + ", "
    return (f"{os.cpu_count()} cores ({cpu}), kernel {platform.release()}, "
            f"temp home on {fs[0]} ({fs[1]}), {wrk_version}{time.strftime('%Y-%m-%d')}")


class Processes:
    """Everything this run started, stopped and removed in `close` whatever happened."""

    def __init__(self):
        self.procs = []
        self.dirs = []

    def close(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)


def build_sink():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", SINK_MANIFEST,
                    "--target-dir", SINK_TARGET], check=True)
    return os.path.join(SINK_TARGET, "release", "rouse-bench-sink")


def start_sink(processes, binary):
    proc = subprocess.Popen([binary, "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    processes.procs.append(proc)
    return int(proc.stdout.readline())


class Daemon:
    def __init__(self, processes, rouse):
        self.home = tempfile.mkdtemp(prefix="rouse-bench-events-")
        processes.dirs.append(self.home)
        self.log = open(os.path.join(self.home, "daemon.log"), "w")
        self.proc = subprocess.Popen(
            [rouse, "serve", "--home", self.home, "--ingress", "127.0.0.1:0", "--api", "127.0.0.1:0",
             "--events", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=self.log)
        processes.procs.append(self.proc)
        path = os.path.join(self.home, "daemon.json")
        for _ in range(600):
            if self.proc.poll() is not None:
                sys.exit("the daemon exited; see " + self.log.name)
            try:
                addresses = json.load(open(path))
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        else:
            sys.exit("the daemon did not start; see " + self.log.name)
        self.events = addresses["events"]
        self.api = addresses["api"]
        self.pid = self.proc.pid
        self.token = open(os.path.join(self.home, "token")).read().strip()

    def put_trigger(self, name, subscriber_url):
        body = json.dumps({"name": name, "broker": "default", "created_at": "2026-01-01T00:00:00Z",
                           "filters": [], "subscriber": {"url": subscriber_url}}).encode()
        request = urllib.request.Request(f"http://{self.api}/v1/triggers/{name}", data=body, method="PUT",
                                         headers={"Authorization": f"Bearer {self.token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status >= 300:
                sys.exit(f"PUT trigger: {response.status}")

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.api}/metrics", timeout=10) as response:
            return parse_metrics(response.read().decode())


def parse_metrics(text):
    """Prometheus text → [(name, {label: value}, value)]."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)", line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return samples


def metric_sum(samples, name, **labels):
    return sum(v for n, ls, v in samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


def accepted(samples):
    return metric_sum(samples, "rouse_broker_events_accepted_total", broker="default")


def delivered(samples, trigger):
    return metric_sum(samples, "rouse_trigger_events_delivered_total", trigger=trigger)


def histogram(samples, trigger):
    """Cumulative buckets [(upper bound s, count)] of the trigger's delivery latency."""
    buckets = [(float(ls["le"]), v) for n, ls, v in samples
               if n == "rouse_trigger_delivery_latency_seconds_bucket" and ls.get("trigger") == trigger]
    return sorted(buckets)


def histogram_quantile(before, after, q):
    """Prometheus' histogram_quantile over the increase between two scrapes: linear within
    the bucket the rank falls in (the first bucket from 0)."""
    prior = dict(before)
    buckets = [(le, count - prior.get(le, 0)) for le, count in after]
    total = buckets[-1][1]
    if total == 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


def wrk(url, seconds, connections, script):
    threads = min(2, connections)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "--latency", "-s", script, url], capture_output=True, text=True, check=True).stdout

    def latency(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "requests": int(re.search(r"(\d+) requests in", out).group(1)),
            "p50": latency("50"), "p99": latency("99"),
            "errors": (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0),
            "raw": out}


def send_at_rate(sink_binary, address, rate, seconds, connections=8, prefix="lat"):
    """Sends `rate` events/s for `seconds` over `connections` keep-alive connections (the
    sink's `send` command, open loop, each event's `time` set just before its request).
    Returns (ids answered 202, ack ms list, failures, most late ms, achieved events/s,
    (slowest ack ms, when that event was due in s from the start))."""
    out = subprocess.run([sink_binary, "send", address, "/default/default", str(rate), str(seconds),
                          str(connections), prefix, DATA], capture_output=True, text=True, check=True).stdout
    ids, acks, failures, slowest = [], [], 0, (0, 0)
    lines = out.splitlines()
    for line in lines[:-1]:
        event_id, status, micros = line.split()
        acks.append(int(micros) / 1000)
        slowest = max(slowest, (acks[-1], int(event_id.rsplit("-", 1)[1]) / rate))
        if status == "202":
            ids.append(event_id)
        else:
            failures += 1
    _, lag, _, elapsed = lines[-1].split()
    return ids, acks, failures, int(lag) / 1000, len(acks) / (int(elapsed) / 1e6), slowest


def sink_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.read().decode()


def wait_delivered(daemon, trigger, target, timeout):
    """Seconds until the trigger's delivered counter reaches `target` (None: timed out)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if delivered(daemon.metrics(), trigger) >= target:
            return time.perf_counter() - started
        time.sleep(0.02)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rouse", default=os.path.join(ROOT, "target", "release", "rouse"))
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    parser.add_argument("--connections", default="64,256", help="wrk connection counts, comma-separated")
    parser.add_argument("--reps", type=int, default=3, help="alternating wrk runs per side and connection count")
    parser.add_argument("--rate", default="1000,5000", help="events/s of the latency runs, comma-separated")
    parser.add_argument("--latency-seconds", type=int, default=10)
    args = parser.parse_args()
    rouse = os.path.abspath(args.rouse)
    if not os.path.exists(rouse):
        sys.exit(f"{rouse} is missing: cargo build --release -p rouse-cli")
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing (apt-get install wrk)")
    connection_counts = [int(c) for c in args.connections.split(",")]
    args.rate = [int(r) for r in args.rate.split(",")]

    print(f"# machine: {machine()}", flush=True)
    sink_binary = build_sink()
    processes = Processes()
    # A TERM (not only Ctrl-C) still stops the daemon and removes its home.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    try:
        run(args, rouse, sink_binary, processes, connection_counts)
    finally:
        processes.close()


def run(args, rouse, sink_binary, processes, connection_counts):
    sink_port = start_sink(processes, sink_binary)
    daemon = Daemon(processes, rouse)
    scratch = tempfile.mkdtemp(prefix="rouse-bench-wrk-")
    processes.dirs.append(scratch)
    script = os.path.join(scratch, "cloudevent.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT % json.dumps(DATA))
    ceiling_url = f"http://127.0.0.1:{sink_port}/default/default"
    broker_url = f"http://{daemon.events}/default/default"
    print(f"# daemon pid {daemon.pid}, events {daemon.events}, api {daemon.api}; sink on {sink_port}", flush=True)

    # Warm-up, both sides.
    wrk(ceiling_url, 2, 64, script)
    wrk(broker_url, 2, 64, script)

    # 1. Ceiling versus durable ingest, alternating.
    ingest = {}
    for c in connection_counts:
        runs = {"ceiling": [], "broker": []}
        for _ in range(args.reps):
            runs["ceiling"].append(wrk(ceiling_url, args.seconds, c, script))
            before = accepted(daemon.metrics())
            result = wrk(broker_url, args.seconds, c, script)
            result["accepted"] = accepted(daemon.metrics()) - before
            runs["broker"].append(result)
            print(f"#   c={c}: ceiling {runs['ceiling'][-1]['rps']:.0f}/s, broker {result['rps']:.0f}/s "
                  f"(p99 {result['p99']:.2f} ms, errors {result['errors']}, accepted {result['accepted']:.0f} "
                  f"for {result['requests']} answered)", flush=True)
        ingest[c] = runs

    # 2. Delivery latency at a fixed rate to a warm subscriber.
    trigger = "bench"
    daemon.put_trigger(trigger, f"http://127.0.0.1:{sink_port}/")
    # Wait until the trigger delivers (it starts at the head once it runs).
    for i in range(200):
        send_at_rate(sink_binary, daemon.events, 100, 0.01, connections=1, prefix=f"probe{i}")
        if wait_delivered(daemon, trigger, 1, 0.5) is not None:
            break
    else:
        sys.exit("the trigger never delivered")
    time.sleep(0.5)
    latencies = {}
    for rate in args.rate:
        latencies[rate] = measure_latency(daemon, sink_binary, sink_port, trigger, rate, args.latency_seconds,
                                          f"lat{rate}")
        l = latencies[rate]
        print(f"#   {rate}/s: subscriber p50 {l['arrival'][0]:.2f} p99 {l['arrival'][1]:.2f} ms, "
              f"sent {l['sent']}, at the subscriber {l['distinct']}", flush=True)

    # 3. Ingest at full speed with the trigger delivering, then the time to catch up.
    c = connection_counts[0]
    before = daemon.metrics()
    started = time.perf_counter()
    loaded = wrk(broker_url, args.seconds, c, script)
    ended = daemon.metrics()
    loaded_accepted = accepted(ended) - accepted(before)
    behind = loaded_accepted - (delivered(ended, trigger) - delivered(before, trigger))
    catch_up = wait_delivered(daemon, trigger, delivered(before, trigger) + loaded_accepted, 300)
    total = time.perf_counter() - started
    with_trigger = {"c": c, "wrk": loaded, "accepted": loaded_accepted, "behind": behind,
                    "catch_up": catch_up, "delivery_rate": loaded_accepted / total if catch_up is not None else None}

    report(args, ingest, latencies, with_trigger)


def measure_latency(daemon, sink_binary, sink_port, trigger, rate, seconds, prefix):
    """Sends `rate` events/s for `seconds`, waits until all are delivered, and collects the
    three views of their latency and the delivery accounting."""
    sink_get(sink_port, "/reset")
    before = daemon.metrics()
    ids, acks, failures, lag, achieved, slowest = send_at_rate(sink_binary, daemon.events, rate, seconds, prefix=prefix)
    sent_accepted = accepted(daemon.metrics()) - accepted(before)
    drain = wait_delivered(daemon, trigger, delivered(before, trigger) + sent_accepted, 60)
    time.sleep(0.3)
    after = daemon.metrics()
    hist_before, hist_after = histogram(before, trigger), histogram(after, trigger)
    seen = [line.split() for line in sink_get(sink_port, "/stats").splitlines()]
    arrival_ms = [int(us) / 1000 for _, us in seen]
    seen_ids = [event_id for event_id, _ in seen]
    prior = dict(hist_before)
    return {
        "sent": len(ids), "failures": failures, "lag": lag, "achieved": achieved, "slowest": slowest,
        "accepted": sent_accepted,
        "delivered": delivered(after, trigger) - delivered(before, trigger),
        "drained": drain is not None,
        "at_subscriber": len(seen_ids), "distinct": len(set(seen_ids)),
        "missing": len(set(ids) - set(seen_ids)),
        "hist": [histogram_quantile(hist_before, hist_after, q) for q in (0.5, 0.99, 0.999)],
        "hist_count": hist_after[-1][1] - prior.get(float("inf"), 0),
        "hist_buckets": [(le, count - prior.get(le, 0)) for le, count in hist_after],
        "arrival": [percentile(arrival_ms, p) for p in (50, 99, 99.9)] + [max(arrival_ms)],
        "ack": [percentile(acks, p) for p in (50, 99, 99.9)] + [max(acks)],
    }


def median(runs, key):
    return statistics.median(r[key] for r in runs)


def report(args, ingest, latencies, with_trigger):
    print(f"\n## Durable ingest versus the ceiling (wrk -t2 -d{args.seconds}s --latency, binary-mode CloudEvent, "
          f"{len(DATA)}-byte data; {args.reps} alternating runs per row, medians)\n")
    print("| side | connections | req/s | p50 ms | p99 ms | errors | vs ceiling |")
    print("|---|---|---|---|---|---|---|")
    for c, runs in ingest.items():
        ceiling_rps = median(runs["ceiling"], "rps")
        for side, label in (("ceiling", "ceiling: trivial hyper server, 202, no disk"),
                            ("broker", "Rouse broker: 202 after group commit")):
            r = runs[side]
            errors = sum(x["errors"] for x in r)
            print(f"| {label} | {c} | {median(r, 'rps'):.0f} | {median(r, 'p50'):.2f} | {median(r, 'p99'):.2f} | "
                  f"{errors} | {median(r, 'rps') / ceiling_rps:.2f} |")
    every = [f"{x['rps']:.0f}" for runs in ingest.values() for x in runs["broker"]]
    print(f"\nbroker runs, req/s each: {', '.join(every)}; accepted counter covered every 202: "
          f"{all(x['accepted'] >= x['requests'] for runs in ingest.values() for x in runs['broker'])}")

    print(f"\n## Delivery to a warm subscriber (fixed rate for {args.latency_seconds} s, open loop over 8 "
          f"keep-alive connections; one trigger, no filter)\n")
    print("| events/s | measure | events | p50 ms | p99 ms | p99.9 ms | max ms |")
    print("|---|---|---|---|---|---|---|")
    for rate, l in latencies.items():
        h50, h99, h999 = l["hist"]
        a, k = l["arrival"], l["ack"]
        print(f"| {rate} | daemon histogram: ingress → subscriber's 2xx (interpolated within its buckets, 0.1 ms doubling) | "
              f"{l['hist_count']:.0f} | {h50 * 1000:.2f} | {h99 * 1000:.2f} | {h999 * 1000:.2f} | – |")
        print(f"| {rate} | at the subscriber: sender's `time` → arrival | {l['at_subscriber']} | {a[0]:.2f} | "
              f"{a[1]:.2f} | {a[2]:.2f} | {a[3]:.2f} |")
        print(f"| {rate} | at the sender: request → 202 (durable) | {l['sent']} | {k[0]:.2f} | {k[1]:.2f} | "
              f"{k[2]:.2f} | {k[3]:.2f} |")
    print()
    for rate, l in latencies.items():
        buckets = ", ".join(f"≤{le * 1000:g} ms {count:.0f}" for le, count in l["hist_buckets"][:6])
        print(f"- {rate}/s: sent {l['sent']} at {l['achieved']:.0f}/s (failed {l['failures']}; the latest "
              f"left {l['lag']:.1f} ms after its due time; slowest 202 {l['slowest'][0]:.1f} ms, "
              f"due at +{l['slowest'][1]:.2f} s), accepted {l['accepted']:.0f}, delivered {l['delivered']:.0f}, at the subscriber "
              f"{l['at_subscriber']} ({l['distinct']} distinct, {l['missing']} sent ids missing): all delivered "
              f"{'yes' if l['drained'] and l['missing'] == 0 else 'NO'}; histogram (cumulative) {buckets}")

    w = with_trigger
    print(f"\n## Ingest while the trigger delivers (wrk -c{w['c']} -d{args.seconds}s)\n")
    alone = median(ingest[w["c"]]["broker"], "rps") if w["c"] in ingest else None
    print("| ingest req/s | vs no trigger | p99 ms | errors | accepted | accepted − delivered when wrk ended | "
          "catch-up s | delivered/s overall |")
    print("|---|---|---|---|---|---|---|---|")
    rate = f"{w['delivery_rate']:.0f}" if w["delivery_rate"] else "did not catch up"
    catch_up = f"{w['catch_up']:.2f}" if w["catch_up"] is not None else "> 300"
    ratio = f"{w['wrk']['rps'] / alone:.2f}" if alone else "–"
    print(f"| {w['wrk']['rps']:.0f} | {ratio} | {w['wrk']['p99']:.2f} | {w['wrk']['errors']} | {w['accepted']:.0f} | "
          f"{w['behind']:.0f} | {catch_up} | {rate} |")


if __name__ == "__main__":
    main()
