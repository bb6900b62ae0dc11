#!/usr/bin/env python3
"""Rouse benchmarks, each side by side with its baseline in the same run.

    bench/run.py [--reps N] [--pairs N] [--seconds S] [--only cold|proxy|burst]

- cold:  time to first response byte for a service at zero (Rouse) versus `docker run` of
         the same image polled until its first answer (bare Docker), N repetitions each,
         interleaved so machine noise hits both alike.
- proxy: wrk through the ingress versus wrk straight at the instance's published port, in
         pairs of back-to-back runs; the throughput ratio is the median over the pairs.
- burst: 200 concurrent clients hit a service at zero with containerConcurrency 10.

Needs a built `target/release/rouse` (or --rouse PATH), the sample images (samples/build.sh),
Docker and wrk. Starts its own daemon on a temporary home and removes everything it created.
"""

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HELLO = "rouse-samples/hello:latest"
SLEEPER = "rouse-samples/sleeper:latest"

# Windows short enough that a revision reaches zero about a second after its last request.
FAST_ZERO = """
[autoscaler]
stable-window = "1s"
scale-to-zero-grace-period = "0s"
tick-interval = "100ms"
"""


def percentile(values, p):
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def first_byte_ms(port, host, path="/", timeout=30.0):
    """Milliseconds until the status line of a GET arrives; None on error."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()  # returns once the status line and headers are read
        elapsed = (time.perf_counter() - started) * 1000
        response.read()
        return elapsed if response.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


class Daemon:
    def __init__(self, rouse, config):
        self.rouse = rouse
        self.home = tempfile.mkdtemp(prefix="rouse-bench-")
        with open(os.path.join(self.home, "rouse.toml"), "w") as f:
            f.write(config)
        self.log = open(os.path.join(self.home, "daemon.log"), "w")
        self.proc = subprocess.Popen(
            [rouse, "serve", "--home", self.home, "--ingress", "127.0.0.1:0", "--api", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        path = os.path.join(self.home, "daemon.json")
        for _ in range(300):
            if os.path.exists(path):
                try:
                    addresses = json.load(open(path))
                    break
                except ValueError:
                    pass
            time.sleep(0.05)
        else:
            sys.exit("the daemon did not start; see " + self.log.name)
        self.ingress_port = int(addresses["ingress"].rsplit(":", 1)[1])

    def cli(self, *args):
        out = subprocess.run([self.rouse, *args, "--home", self.home], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"rouse {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def running(self, service):
        home_id = open(os.path.join(self.home, "home-id")).read().strip()
        out = subprocess.run(["docker", "ps", "-q", "--filter", f"label=rouse.home={home_id}",
                              "--filter", f"label=rouse.service={service}"], capture_output=True, text=True)
        return out.stdout.split()

    def frozen(self, service):
        """True when the service has exactly one container and it is paused."""
        home_id = open(os.path.join(self.home, "home-id")).read().strip()
        out = subprocess.run(["docker", "ps", "-a", "--format", "{{.State}}", "--filter", f"label=rouse.home={home_id}",
                              "--filter", f"label=rouse.service={service}"], capture_output=True, text=True)
        return out.stdout.split() == ["paused"]

    def close(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        home_id = open(os.path.join(self.home, "home-id")).read().strip()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=rouse.home={home_id}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def bare_docker_start_ms(image):
    """`docker run` + poll until the first 200: the floor of a fresh start."""
    started = time.perf_counter()
    cid = subprocess.run(["docker", "run", "-d", "--init", "-p", "127.0.0.1::8080", image],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        port = int(subprocess.run(["docker", "port", cid, "8080/tcp"], capture_output=True, text=True,
                                  check=True).stdout.split(":")[-1])
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            try:
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.001)
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True)


def bench_cold(daemon, reps):
    """(a) bare docker run, (b) Rouse fresh start, (c) Rouse thaw from frozen, interleaved."""
    daemon.cli("deploy", "fresh", "--image", HELLO, "--frozen-retention", "0s")
    daemon.cli("deploy", "thaw", "--image", HELLO)
    fresh_host = f"fresh.localhost:{daemon.ingress_port}"
    thaw_host = f"thaw.localhost:{daemon.ingress_port}"
    docker_ms, fresh_ms, thaw_ms = [], [], []
    for _ in range(reps):
        wait_for(lambda: not daemon.running("fresh"), 60, "the fresh service to reach zero")
        ms = first_byte_ms(daemon.ingress_port, fresh_host)
        if ms is None:
            sys.exit("a request from zero failed")
        fresh_ms.append(ms)
        wait_for(lambda: daemon.frozen("thaw"), 60, "the thaw service to freeze")
        ms = first_byte_ms(daemon.ingress_port, thaw_host)
        if ms is None:
            sys.exit("a request to a frozen service failed")
        thaw_ms.append(ms)
        docker_ms.append(bare_docker_start_ms(HELLO))
    return docker_ms, fresh_ms, thaw_ms


def wrk(url, host, seconds, connections):
    threads = min(2, connections)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Host: {host}", url],
                         capture_output=True, text=True, check=True).stdout

    def latency(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": latency("50"), "p99": latency("99"), "errors": int(errors.group(1)) if errors else 0}


def bench_proxy(daemon, seconds, connections, pairs):
    daemon.cli("deploy", "warm", "--image", HELLO, "--scale-min", "1")
    host = f"warm.localhost:{daemon.ingress_port}"
    # The instance's published port, from Docker.
    cid = daemon.running("warm")[0]
    direct_port = int(subprocess.run(["docker", "port", cid, "8080/tcp"], capture_output=True, text=True,
                                     check=True).stdout.split(":")[-1])
    wrk(f"http://127.0.0.1:{daemon.ingress_port}/", host, 2, connections)  # warm-up
    direct_url, rouse_url = f"http://127.0.0.1:{direct_port}/", f"http://127.0.0.1:{daemon.ingress_port}/"
    return {c: paired_runs(direct_url, rouse_url, host, seconds, c, pairs) for c in (connections, 1)}


def paired_runs(direct_url, rouse_url, host, seconds, connections, pairs):
    """`pairs` back-to-back runs of each side, the first side alternating, so that drift on a
    noisy machine hits both; each pair gives one ratio, and the median pair is reported."""
    runs = {"direct": [], "rouse": []}
    for i in range(pairs):
        order = (("direct", direct_url), ("rouse", rouse_url))
        for side, url in order if i % 2 == 0 else reversed(order):
            runs[side].append(wrk(url, host, seconds, connections))
    ratios = [r["rps"] / d["rps"] for d, r in zip(runs["direct"], runs["rouse"])]
    medians = {k: {m: statistics.median(r[m] for r in v) for m in ("rps", "p50", "p99")} for k, v in runs.items()}
    return {"medians": medians, "ratios": ratios, "runs": runs}


def bench_burst(daemon, clients):
    daemon.cli("deploy", "burst", "--image", SLEEPER, "--concurrency-limit", "10")
    host = f"burst.localhost:{daemon.ingress_port}"
    # At zero: frozen (the default) or gone.
    wait_for(lambda: daemon.frozen("burst") or not daemon.running("burst"), 60, "the service to reach zero")
    statuses, peak, done = [], [0], threading.Event()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", daemon.ingress_port, timeout=120)
        try:
            conn.request("GET", "/?ms=100", headers={"Host": host})
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        except OSError as e:
            statuses.append(str(e))
        finally:
            conn.close()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], len(daemon.running("burst")))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    errors = [s for s in statuses if s != 200]
    return {"clients": clients, "errors": len(errors), "seconds": elapsed, "peak_instances": peak[0]}


def proxy_table(title, result):
    medians, ratios = result["medians"], result["ratios"]
    print(f"\n## {title}")
    print("| side | req/s | p50 ms | p99 ms |\n|---|---|---|---|")
    for side in ("direct", "rouse"):
        m = medians[side]
        print(f"| {side} | {m['rps']:.0f} | {m['p50']:.3f} | {m['p99']:.3f} |")
    d, r = medians["direct"], medians["rouse"]
    print(f"| ratio / added | **{statistics.median(ratios):.2f}** | {r['p50'] - d['p50']:+.3f} | {r['p99'] - d['p99']:+.3f} |")
    spread = sorted(ratios)
    print(f"\nthroughput ratio of each pair, sorted: {' '.join(f'{x:.2f}' for x in spread)} "
          f"(median {statistics.median(ratios):.2f}, middle half {percentile(ratios, 25):.2f}-{percentile(ratios, 75):.2f})")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rouse", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "rouse"))
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--seconds", type=int, default=3, help="wrk duration per run")
    parser.add_argument("--pairs", type=int, default=10, help="proxy: runs of each side, paired")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", choices=["cold", "proxy", "burst"])
    parser.add_argument("--dial", choices=["container-ip", "published-port"],
                        help="how Rouse reaches instances (default: the platform's)")
    args = parser.parse_args()
    rouse = os.path.abspath(args.rouse)
    if not os.path.exists(rouse):
        sys.exit(f"{rouse} is missing: cargo build --release -p rouse-cli")

    print(f"# machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
          f"docker {subprocess.run(['docker', 'version', '-f', '{{.Server.Version}}'], capture_output=True, text=True).stdout.strip()}")
    config = FAST_ZERO + (f'\n[runtime]\ndial = "{args.dial}"\n' if args.dial else "")
    daemon = Daemon(rouse, config)
    try:
        if args.only in (None, "cold"):
            docker_ms, fresh_ms, thaw_ms = bench_cold(daemon, args.reps)
            d50, d95 = percentile(docker_ms, 50), percentile(docker_ms, 95)
            print(f"\n## from zero to first response byte ({args.reps} reps each, interleaved), ms")
            print("| side | p50 | p95 | p50 vs (a) |\n|---|---|---|---|")
            print(f"| (a) bare `docker run` + poll | {d50:.0f} | {d95:.0f} | 1.00 |")
            for label, values in (("(b) Rouse, fresh start", fresh_ms), ("(c) Rouse, thaw from frozen", thaw_ms)):
                p50, p95 = percentile(values, 50), percentile(values, 95)
                print(f"| {label} | {p50:.1f} | {p95:.1f} | {p50 / d50:.3f} ({d50 / p50:.1f}x faster) |")
        if args.only in (None, "proxy"):
            results = bench_proxy(daemon, args.seconds, args.connections, args.pairs)
            for c, result in results.items():
                threads = min(2, c)
                proxy_table(f"warm proxy (wrk -t{threads} -c{c} -d{args.seconds}s, {args.pairs} pairs, medians)", result)
            errors = sum(x["errors"] for result in results.values() for v in result["runs"].values() for x in v)
            print(f"\nnon-2xx responses across all runs: {errors}")
        if args.only in (None, "burst"):
            burst = bench_burst(daemon, 200)
            print("\n## burst from zero (200 concurrent clients, GET /?ms=100, containerConcurrency 10)")
            print("| clients | errors | seconds to serve all | peak instances |\n|---|---|---|---|")
            print(f"| {burst['clients']} | {burst['errors']} | {burst['seconds']:.2f} | {burst['peak_instances']} |")
    finally:
        daemon.close()


if __name__ == "__main__":
    main()
