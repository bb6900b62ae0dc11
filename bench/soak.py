#!/usr/bin/env python3
"""Soak: mixed serving and event load for a long time, with kill -9 of the daemon and a full
disk along the way; reports what RELIABILITY.md quotes.

    python3 bench/soak.py [--minutes 30] [--kill-every 10] [--rate 200] [--event-rate 200]

One release daemon (a copy of target/release/rouse, so a rebuild during the run changes
nothing) with the default configuration on a fresh home, which is a 256 MiB tmpfs so that the
disk can be filled (needs root; without it the run says so and has no disk-full episode):

- serving: bench/sink's `get`, open loop at --rate requests/s over 8 keep-alive connections
  (reconnecting after errors) to `web`, the sleeper sample answering `/?ms=10`, with
  `--scale-target 2` so the load keeps a few instances; and every 150 s one request to `cold`
  (the hello sample), which has scaled to zero by then and wakes.
- events: bench/sink's `send` at --event-rate events/s over 4 connections to the `default`
  broker, with two triggers (`to-a` with no filter, `to-b` filtered on the type) to two warm
  subscribers on the host (bench/sink), and Knative's default delivery (10 retries).
- faults: kill -9 of the daemon every --kill-every minutes in the middle of the load, started
  again at once on the same ports and home (as a supervisor would); once, halfway between the
  first two kills (or at half time), the home's tmpfs is filled for 30 s and freed again.

The load runs in chunks of --chunk seconds; after each, the daemon's resident memory, open
files, threads and runtime tasks (rouse_runtime_tasks), and the home's containers are sampled.
At the end the load stops, the triggers get up to 120 s to catch up, and the run counts every
event answered 202 that a subscriber never saw (lost), duplicates, and containers the daemon
does not account for (orphans). Markdown goes to stdout (and --report FILE); the daemon's log
and the raw samples stay in --keep DIR when given.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no bench/__pycache__ from importing events.py
import events as bench  # noqa: E402  (shared helpers: sink, metrics, percentiles, machine)

ROOT = bench.ROOT
SLEEPER = "rouse-samples/sleeper:latest"
HELLO = "rouse-samples/hello:latest"
# Buckets of "time since the last kill" that errors are counted in, in seconds.
SINCE_KILL = [(0, 5), (5, 15), (15, 60), (60, None)]


def free_ports(n):
    import socket
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Daemon:
    """The daemon under soak: started, killed and started again on the same home and ports."""

    def __init__(self, rouse, home, log_path, ports):
        self.rouse, self.home, self.ports = rouse, home, ports
        self.ingress, self.api, self.events = (f"127.0.0.1:{p}" for p in ports)
        self.log = open(log_path, "a")
        self.proc = None
        self.lives = []  # [(started at, pid)]

    def start(self):
        path = os.path.join(self.home, "daemon.json")
        try:
            os.unlink(path)
        except OSError:
            pass
        self.proc = subprocess.Popen(
            [self.rouse, "serve", "--home", self.home, "--ingress", self.ingress, "--api", self.api,
             "--events", self.events], stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"the daemon exited with {self.proc.returncode}; see {self.log.name}")
            if os.path.exists(path):
                self.lives.append((time.monotonic(), self.proc.pid))
                return
            time.sleep(0.02)
        sys.exit(f"the daemon did not start within 60 s; see {self.log.name}")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args):
        return subprocess.run([self.rouse, *args, "--home", self.home], capture_output=True, text=True)

    def cli_ok(self, *args):
        done = self.cli(*args)
        if done.returncode != 0:
            sys.exit(f"rouse {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def metrics(self):
        try:
            with urllib.request.urlopen(f"http://{self.api}/metrics", timeout=5) as response:
                return bench.parse_metrics(response.read().decode())
        except (OSError, urllib.error.URLError):
            return None

    def healthz(self):
        return status_of(f"http://{self.api}/healthz", 5)

    def proc_stats(self):
        """Resident MiB, open files and threads of the running daemon."""
        pid = self.proc.pid
        try:
            status = open(f"/proc/{pid}/status").read()
            rss = int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024
            threads = int(next(line for line in status.splitlines() if line.startswith("Threads")).split()[1])
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except (OSError, StopIteration):
            return None
        return rss, fds, threads


def status_of(request, timeout):
    """The status `request` (a URL or a Request) gets, 0 when there is no answer."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def home_containers(home_id):
    """(name, state) of the containers labelled with this home."""
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=rouse.home={home_id}", "--format",
                          "{{.Names}} {{.State}}"], capture_output=True, text=True).stdout
    return [tuple(line.split()) for line in out.splitlines() if line.strip()]


def accounted_instances(samples):
    """Instances the daemon accounts for: running (starting or ready) and frozen."""
    return (bench.metric_sum(samples, "rouse_revision_actual_instances")
            + bench.metric_sum(samples, "rouse_revision_frozen_instances"))


class DiskFull:
    """Fills the home's tmpfs for `seconds`, then frees it; records what the daemon said."""

    def __init__(self, home, seconds):
        self.home, self.seconds = home, seconds
        self.started = self.freed = None
        self.healthz = []  # [(seconds since filled, status)]
        self.large = []  # [(monotonic time, id, status)] of the large events sent while full

    def send_large(self, daemon, n):
        """A 512 KiB event: the event log must grow to take it, which a full disk refuses
        (small events fit in the pages trimming freed, so they alone may never hit it)."""
        event_id = f"disk-{n}"
        request = urllib.request.Request(
            f"http://{daemon.events}/default/default", data=b"x" * (512 * 1024), method="POST",
            headers={"Content-Type": "application/octet-stream", "ce-specversion": "1.0", "ce-id": event_id,
                     "ce-source": "/bench/soak", "ce-type": "dev.rouse.bench",
                     "ce-time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self.large.append((time.monotonic(), event_id, status_of(request, 10)))

    def run(self, daemon):
        filler = os.path.join(self.home, "filler")
        self.started = time.monotonic()
        with open(filler, "wb") as f:
            chunk = b"\0" * (1 << 20)
            try:
                while True:
                    f.write(chunk)
                    f.flush()
            except OSError:
                pass
        n = 0
        while time.monotonic() - self.started < self.seconds:
            self.healthz.append((time.monotonic() - self.started, daemon.healthz()))
            self.send_large(daemon, n)
            n += 1
            time.sleep(1)
        os.unlink(filler)
        self.freed = time.monotonic()
        for _ in range(20):
            self.healthz.append((time.monotonic() - self.started, daemon.healthz()))
            self.send_large(daemon, n)
            n += 1
            time.sleep(0.5)


def run_chunk(sink_binary, daemon, seconds, rate, event_rate, n):
    """One chunk of serving and event load in parallel; returns the two outputs."""
    get = subprocess.Popen([sink_binary, "get", daemon.ingress, "web.localhost", "/?ms=10", str(rate),
                            str(seconds), "8"], stdout=subprocess.PIPE, stderr=daemon.log, text=True)
    send = subprocess.Popen([sink_binary, "send", daemon.events, "/default/default", str(event_rate),
                             str(seconds), "4", f"c{n}", bench.DATA], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    get_out, _ = get.communicate()
    send_out, _ = send.communicate()
    return get_out, send_out


def parse_get(out, chunk_start):
    """[(monotonic time due, outcome, ms)] of one `get` chunk."""
    requests = []
    start = chunk_start + 0.1
    for line in out.splitlines():
        first, outcome, *rest = line.split() + [""]
        if first == "start":
            # The sender's own start, from its wall clock: exact to the kills' times.
            start = time.monotonic() - (time.time() - int(outcome) / 1e6)
            continue
        requests.append((start + int(first) / 1000, outcome, int(rest[0]) / 1000))
    return requests


def parse_send(out, chunk_start, event_rate):
    """[(monotonic time due, id, status)] of one `send` chunk (a sender that hit a connection
    error stops for the rest of its chunk: its events were never sent, so none is owed)."""
    sent = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[0] == "lag":
            continue
        event_id, status, _ = parts
        seq = int(event_id.rsplit("-", 1)[1])
        sent.append((chunk_start + 0.1 + seq / event_rate, event_id, int(status)))
    return sent


def since_kill_bucket(at, kills):
    before = [k for k in kills if k <= at]
    if not before:
        return "no kill yet"
    since = at - before[-1]
    for lo, hi in SINCE_KILL:
        if hi is None or since < hi:
            return f"{lo}-{hi} s" if hi is not None else f"> {lo} s"
    return "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rouse", default=os.path.join(ROOT, "target", "release", "rouse"))
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--kill-every", type=float, default=10, help="minutes between kill -9s")
    parser.add_argument("--rate", type=int, default=200, help="serving requests/s")
    parser.add_argument("--event-rate", type=int, default=200, help="events/s")
    parser.add_argument("--chunk", type=int, default=5, help="seconds per load chunk")
    parser.add_argument("--disk-full-seconds", type=int, default=30)
    parser.add_argument("--report", help="also write the report to this file")
    parser.add_argument("--keep", help="keep the daemon log and raw samples in this directory")
    args = parser.parse_args()
    rouse = os.path.abspath(args.rouse)
    if not os.path.exists(rouse):
        sys.exit(f"{rouse} is missing: cargo build --release -p rouse-cli")
    for image in (SLEEPER, HELLO):
        if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
            sys.exit(f"image {image} is missing: run samples/build.sh")

    sink_binary = bench.build_sink()
    processes = bench.Processes()
    scratch = tempfile.mkdtemp(prefix="rouse-soak-")
    processes.dirs.append(scratch)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))
    daemon = None
    mounted = False
    home = os.path.join(scratch, "home")
    os.mkdir(home)
    try:
        if os.geteuid() == 0:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", home], check=True)
            mounted = True
        else:
            print("# not root: the home is not a tmpfs, and the run has NO disk-full episode", flush=True)
        binary = os.path.join(scratch, "rouse")
        shutil.copy2(rouse, binary)
        daemon = Daemon(binary, home, os.path.join(scratch, "daemon.log"), free_ports(3))
        report = soak(args, daemon, sink_binary, processes, mounted)
        text = render(args, report)
        print(text)
        if args.report:
            with open(args.report, "w") as f:
                f.write(text)
    finally:
        if daemon is not None:
            daemon.stop()
            home_id_path = os.path.join(home, "home-id")
            if os.path.exists(home_id_path):
                home_id = open(home_id_path).read().strip()
                ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=rouse.home={home_id}"],
                                     capture_output=True, text=True).stdout.split()
                if ids:
                    subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True)
            if args.keep:
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy2(os.path.join(scratch, "daemon.log"), args.keep)
        if mounted:
            subprocess.run(["umount", home])
        processes.close()


def soak(args, daemon, sink_binary, processes, mounted):
    print(f"# machine: {bench.machine()}", flush=True)
    sinks = {"to-a": bench.start_sink(processes, sink_binary), "to-b": bench.start_sink(processes, sink_binary)}
    daemon.start()
    daemon.cli_ok("deploy", "web", "--image", SLEEPER, "--scale-target", "2")
    daemon.cli_ok("deploy", "cold", "--image", HELLO)
    daemon.cli_ok("trigger", "create", "to-a", "--sink", f"http://127.0.0.1:{sinks['to-a']}/")
    daemon.cli_ok("trigger", "create", "to-b", "--sink", f"http://127.0.0.1:{sinks['to-b']}/",
                  "--filter", "type=dev.rouse.bench")
    home_id = open(os.path.join(daemon.home, "home-id")).read().strip()

    t0 = time.monotonic()
    duration = args.minutes * 60
    kill_every = args.kill_every * 60
    kill_at = [kill_every * k for k in range(1, int(duration // kill_every) + 1) if kill_every * k < duration - 30]
    disk_full_at = (kill_at[0] + kill_every / 2) if kill_at and kill_at[0] + kill_every / 2 < duration - 60 \
        else duration / 2
    disk = DiskFull(daemon.home, args.disk_full_seconds) if mounted else None
    disk_thread = None
    kills = []  # monotonic times of each kill -9
    restarts = []  # seconds from each kill to daemon.json
    requests, events, samples, colds = [], [], [], []
    print(f"# {args.minutes:g} min; kill -9 at {', '.join(f'{k / 60:g}' for k in kill_at) or 'never'} min; "
          f"disk full at {disk_full_at / 60:.1f} min" + ("" if disk else " (skipped: not root)"), flush=True)

    def kill_and_restart():
        kills.append(time.monotonic())
        daemon.kill9()
        daemon.start()
        restarts.append(time.monotonic() - kills[-1])
        print(f"#   {(kills[-1] - t0) / 60:.1f} min: kill -9, serving again after {restarts[-1]:.2f} s",
              flush=True)

    n = 0
    next_cold = 150
    while time.monotonic() - t0 < duration:
        chunk_start = time.monotonic()
        elapsed = chunk_start - t0
        timers = []
        if kill_at and elapsed + args.chunk / 2 >= kill_at[0]:
            kill_at.pop(0)
            timers.append(threading.Timer(args.chunk / 2, kill_and_restart))
        if disk and disk_thread is None and elapsed >= disk_full_at:
            disk_thread = threading.Thread(target=disk.run, args=(daemon,))
            disk_thread.start()
        for timer in timers:
            timer.start()
        get_out, send_out = run_chunk(sink_binary, daemon, args.chunk, args.rate, args.event_rate, n)
        for timer in timers:
            timer.join()
        requests += parse_get(get_out, chunk_start)
        events += parse_send(send_out, chunk_start, args.event_rate)
        sample = {"t": time.monotonic() - t0, "proc": daemon.proc_stats()}
        metrics = daemon.metrics()
        sample["tasks"] = bench.metric_sum(metrics, "rouse_runtime_tasks") if metrics else None
        sample["accounted"] = accounted_instances(metrics) if metrics else None
        sample["containers"] = len([c for c in home_containers(home_id) if c[1] in ("running", "paused")])
        samples.append(sample)
        if elapsed >= next_cold:
            next_cold += 150
            began = time.monotonic()
            req = urllib.request.Request(f"http://{daemon.ingress}/", headers={"Host": "cold.localhost"})
            status = status_of(req, 30)
            colds.append((status, (time.monotonic() - began) * 1000))
        n += 1
        if n % 12 == 0:
            s = samples[-1]
            rss = f"{s['proc'][0]:.0f} MiB" if s["proc"] else "?"
            print(f"#   {s['t'] / 60:.1f} min: rss {rss}, tasks {s['tasks']}, containers {s['containers']} "
                  f"(accounted {s['accounted']})", flush=True)
    if disk_thread:
        disk_thread.join()

    # Catch up, then account for every event (the disk-full episode's large ones too).
    if disk:
        events += disk.large
    acked = {event_id for _, event_id, status in events if status == 202}
    seen = {}
    caught_up = None
    began = time.monotonic()
    while time.monotonic() - began < 120:
        seen = {name: [line.split()[0] for line in bench.sink_get(port, "/stats").splitlines()]
                for name, port in sinks.items()}
        if all(acked <= set(ids) for ids in seen.values()):
            caught_up = time.monotonic() - began
            break
        time.sleep(2)
    latencies = {name: sorted(int(line.split()[1]) / 1000 for line in bench.sink_get(port, "/stats").splitlines())
                 for name, port in sinks.items()}

    # Orphans: once the load is gone and the daemon settled, every container of the home must
    # be one it accounts for.
    settle = time.monotonic()
    orphans = None
    while time.monotonic() - settle < 60:
        metrics = daemon.metrics()
        live = [c for c in home_containers(home_id) if c[1] in ("running", "paused")]
        if metrics is not None:
            orphans = len(live) - accounted_instances(metrics)
            if orphans <= 0:
                break
        time.sleep(2)
    left = home_containers(home_id)
    return {"t0": t0, "duration": duration, "kills": kills, "restarts": restarts, "requests": requests,
            "events": events, "samples": samples, "colds": colds, "acked": acked, "seen": seen,
            "caught_up": caught_up, "latencies": latencies, "orphans": orphans, "left": left,
            "disk": disk, "lives": daemon.lives}


def render(args, r):
    out = []
    p = bench.percentile
    kills = r["kills"]
    out.append(f"## Soak: {args.minutes:g} min, {args.rate} req/s and {args.event_rate} events/s, "
               f"kill -9 every {args.kill_every:g} min\n")
    out.append(f"machine: {bench.machine()}\n")

    # Serving.
    reqs = r["requests"]
    ok = [ms for _, outcome, ms in reqs if outcome == "200"]
    calm = [ms for at, outcome, ms in reqs
            if outcome == "200" and not any(0 <= at - k < 15 for k in kills)
            and not (r["disk"] and r["disk"].started and r["disk"].started - 1 <= at <= r["disk"].freed + 10)]
    out.append("### Serving (`web`, sleeper `/?ms=10`; latency from when each request was due)\n")
    out.append("| requests | 200 | p50 ms | p99 ms | p99.9 ms | max ms | p99.9 ms outside 15 s after a kill and the disk-full episode |")
    out.append("|---|---|---|---|---|---|---|")
    out.append(f"| {len(reqs)} | {len(ok)} | {p(ok, 50):.2f} | {p(ok, 99):.2f} | {p(ok, 99.9):.2f} | {max(ok):.1f} | "
               f"{p(calm, 99.9):.2f} |" if ok else f"| {len(reqs)} | 0 | – | – | – | – | – |")
    out.append("")
    out.append("Requests that did not get 200, by cause and by time since the last kill:\n")
    failures = [(at + ms / 1000, outcome) for at, outcome, ms in reqs if outcome != "200"]
    causes = sorted({outcome for _, outcome, _ in reqs if outcome != "200"})
    buckets = ["no kill yet"] + [f"{lo}-{hi} s" if hi is not None else f"> {lo} s" for lo, hi in SINCE_KILL]
    out.append("| since the last kill | " + " | ".join(causes or ["(none)"]) + " |")
    out.append("|---|" + "---|" * max(1, len(causes)))
    for bucket in buckets:
        # By when each request ended: one in flight when the daemon was killed fails at the kill.
        row = [sum(1 for at, outcome in failures if outcome == c and since_kill_bucket(at, kills) == bucket)
               for c in causes]
        out.append(f"| {bucket} | " + " | ".join(map(str, row or [0])) + " |")
    out.append("")
    if failures:
        shown = ", ".join(f"{(at - r['t0']) / 60:.2f} min {outcome}" for at, outcome in failures[:30])
        out.append(f"When (minutes into the run): {shown}{' ...' if len(failures) > 30 else ''}.\n")
    if r["colds"]:
        statuses = ", ".join(str(s) for s, _ in r["colds"])
        ms = [m for s, m in r["colds"] if s == 200]
        out.append(f"`cold` woken {len(r['colds'])} times (statuses {statuses}); "
                   + (f"p50 {p(ms, 50):.0f} ms, max {max(ms):.0f} ms.\n" if ms else "never answered.\n"))

    # Events.
    ev = r["events"]
    by_status = {}
    for _, _, status in ev:
        by_status[status] = by_status.get(status, 0) + 1
    out.append("### Events (`default` broker; two triggers to warm subscribers)\n")
    out.append("| sent | 202 | 503 (disk full) | no answer (daemon killed) | other |")
    out.append("|---|---|---|---|---|")
    other = sum(v for k, v in by_status.items() if k not in (202, 503, 0))
    out.append(f"| {len(ev)} | {by_status.get(202, 0)} | {by_status.get(503, 0)} | {by_status.get(0, 0)} | {other} |")
    out.append("")
    out.append("| trigger | acknowledged (202) | received | distinct | lost | duplicates | delivery p50 ms | p99 ms | p99.9 ms |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for name, ids in r["seen"].items():
        distinct = set(ids)
        lat = r["latencies"][name]
        lost = len(r["acked"] - distinct)
        out.append(f"| {name} | {len(r['acked'])} | {len(ids)} | {len(distinct)} | **{lost}** | {len(ids) - len(distinct)} | "
                   + (f"{p(lat, 50):.2f} | {p(lat, 99):.2f} | {p(lat, 99.9):.2f} |" if lat else "– | – | – |"))
    caught = f"{r['caught_up']:.1f} s" if r["caught_up"] is not None else "NOT within 120 s"
    out.append(f"\nAfter the load stopped, every acknowledged event had reached both subscribers in {caught}. "
               "Delivery latency is from the sender's `time` to arrival, so it includes redeliveries after a kill.\n")

    # Faults.
    out.append("### Faults\n")
    out.append(f"- kill -9: {len(kills)} times; the restarted daemon wrote daemon.json after "
               + ", ".join(f"{s:.2f} s" for s in r["restarts"]) + ".")
    disk = r["disk"]
    if disk and disk.started:
        during = [(t, s) for t, s in disk.healthz if t < disk.freed - disk.started]
        after = [(t, s) for t, s in disk.healthz if t >= disk.freed - disk.started]
        first_ok = next((t - (disk.freed - disk.started) for t, s in after if s == 200), None)
        refused = [at for at, _, status in ev if status == 503]
        acked_during = sum(1 for at, _, status in ev if status == 202 and disk.started <= at <= disk.freed)
        large = {s: sum(1 for at, _, st in disk.large if st == s and at <= disk.freed) for s in (202, 503)}
        large_after = next((at - disk.freed for at, _, st in disk.large if at > disk.freed and st == 202), None)
        out.append(f"- disk full for {disk.freed - disk.started:.0f} s: `/healthz` answered "
                   f"{sorted({s for _, s in during})} while full, 200 again "
                   + (f"{first_ok:.1f} s after space came back" if first_ok is not None else "NOT within 10 s")
                   + f"; the broker answered 503 to {len(refused)} events and 202 to {acked_during} "
                   "(those it could still commit) during the episode; of the 512 KiB events sent while full "
                   f"(which make the log grow), {large[503]} got 503 and {large[202]} got 202, and the first "
                   "202 after space came back was "
                   + (f"{large_after:.1f} s after." if large_after is not None else "NOT within 10 s."))
    else:
        out.append("- disk full: NOT RUN (the soak needs root to mount the home's tmpfs).")
    left = r["left"]
    out.append(f"- orphans: {r['orphans']} (containers of the home the daemon did not account for once the load "
               f"stopped); containers left at the end: {len(left)} {left}.")
    out.append("")

    # Over time.
    out.append("### The daemon over time (sampled after each chunk; a kill starts a new process)\n")
    out.append("| minute | process | resident MiB | open files | threads | runtime tasks | containers (accounted) |")
    out.append("|---|---|---|---|---|---|---|")
    lives = [start - r["t0"] for start, _ in r["lives"]]
    step = max(1, len(r["samples"]) // 24)
    for s in r["samples"][::step] + r["samples"][-1:]:
        life = sum(1 for start in lives if start <= s["t"])
        rss, fds, threads = s["proc"] or ("?", "?", "?")
        rss = f"{rss:.1f}" if isinstance(rss, float) else rss
        out.append(f"| {s['t'] / 60:.1f} | {life} | {rss} | {fds} | {threads} | "
                   f"{s['tasks'] if s['tasks'] is not None else '?'} | {s['containers']} ({s['accounted']}) |")
    out.append("")
    # Memory per life: after a minute of warm-up, and at its end.
    out.append("Resident memory per process (after 1 min of warm-up → at its end):")
    bounds = lives + [float("inf")]
    for i in range(len(lives)):
        life = [s for s in r["samples"] if bounds[i] + 60 <= s["t"] < bounds[i + 1] and s["proc"]]
        if len(life) >= 2:
            out.append(f"- process {i + 1}: {life[0]['proc'][0]:.1f} → {life[-1]['proc'][0]:.1f} MiB over "
                       f"{(life[-1]['t'] - life[0]['t']) / 60:.1f} min; tasks {life[0]['tasks']:.0f} → "
                       f"{life[-1]['tasks']:.0f}; open files {life[0]['proc'][1]} → {life[-1]['proc'][1]}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
