#!/usr/bin/env python3
"""Small helpers shared by the bench/*.sh scripts.

Python is used instead of jq/curl/ss so the benches need nothing beyond
python3, iproute2, iperf3 and the ispeed binary. Standard library only.

Subcommands (all print to stdout, diagnostics to stderr):
  jget FILE PATH [PATH...]       first dotted PATH present in the JSON file, else "nan"
  keys FILE                      top-level keys of a JSON object file
  median [VALUES...]             median of the numeric values ("nan" ignored)
  healthz URL TIMEOUT_S          poll URL until HTTP 200 or timeout (exit 1)
  waitlisten PORT TIMEOUT_S      wait until something LISTENs on PORT in this netns
  freeport                       print a currently free TCP port on 127.0.0.1
  listen HOST PORT               accept-and-close TCP server (target for tcpping)
  tcpping HOST PORT [opts]       TCP-connect RTT probe, prints a JSON summary
  cputicks PID                   utime+stime of PID in seconds
  rss PID                        VmRSS of PID in MB
  rssmon PID OUTFILE INTERVAL    sample VmRSS until PID exits or SIGTERM; keeps peak MB in OUTFILE
  metric URL NAME                sum of a Prometheus metric's samples at URL ("nan" if absent)
"""

import json
import math
import os
import signal
import socket
import statistics
import sys
import time
import urllib.request


def num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def median(values):
    vals = [v for v in (num(x) for x in values) if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def cmd_jget(path, *keys):
    try:
        with open(path) as f:
            text = f.read()
        # Some tools print log lines before the JSON; take the outermost object.
        start = text.find("{")
        doc = json.loads(text[start:]) if start >= 0 else None
    except (OSError, ValueError):
        doc = None
    for key in keys:
        cur = doc
        for part in key.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                cur = None
                break
        if cur is not None:
            print(json.dumps(cur) if isinstance(cur, (dict, list)) else cur)
            return 0
    print("nan")
    return 0


def cmd_keys(path):
    try:
        with open(path) as f:
            text = f.read()
        doc = json.loads(text[text.find("{"):])
        print(" ".join(doc) if isinstance(doc, dict) else type(doc).__name__)
    except (OSError, ValueError) as e:
        print(f"(unparsable: {e})")


def cmd_median(*values):
    print(median(values))


def cmd_healthz(url, timeout_s):
    deadline = time.monotonic() + float(timeout_s)
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return 0
        except Exception:  # refused, reset, timeout: server not up yet
            pass
        time.sleep(0.1)
    print(f"healthz: {url} not ready after {timeout_s}s", file=sys.stderr)
    return 1


def listening_ports():
    ports = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # TCP_LISTEN
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports


def cmd_waitlisten(port, timeout_s):
    # Reading /proc/net/tcp instead of connecting, because a stray connection
    # to iperf3's control port makes it log an error and can wedge a test.
    deadline = time.monotonic() + float(timeout_s)
    while time.monotonic() < deadline:
        if int(port) in listening_ports():
            return 0
        time.sleep(0.1)
    print(f"waitlisten: nothing listening on port {port} after {timeout_s}s", file=sys.stderr)
    return 1


def cmd_freeport():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def cmd_listen(host, port):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind((host, int(port)))
    srv.listen(1024)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        conn, _ = srv.accept()
        conn.close()


def cmd_tcpping(host, port, *opts):
    """Time connect(): SYN out, SYN-ACK back = one round trip through both
    queues, with no application work on the server in the measured path."""
    args = dict(zip(opts[::2], opts[1::2]))
    count = int(args.get("--count", "0"))
    duration = float(args.get("--duration", "0"))
    skip = float(args.get("--skip", "0"))
    interval = float(args.get("--interval", "0.1"))
    timeout = float(args.get("--timeout", "3"))
    addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    samples, failures, t0 = [], 0, time.monotonic()
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        now = time.monotonic() - t0
        if count and len(samples) + failures >= count:
            break
        if duration and now >= duration:
            break
        s = socket.socket(addr[0], socket.SOCK_STREAM)
        s.settimeout(timeout)
        start = time.monotonic()
        try:
            s.connect(addr[4])
            rtt_ms = (time.monotonic() - start) * 1e3
            if now >= skip:
                samples.append(rtt_ms)
        except OSError:
            if now >= skip:
                failures += 1
        finally:
            s.close()
        time.sleep(max(0.0, interval - (time.monotonic() - start)))
    out = {
        "median_ms": statistics.median(samples) if samples else None,
        "min_ms": min(samples) if samples else None,
        "max_ms": max(samples) if samples else None,
        "samples": len(samples),
        "failures": failures,
    }
    print(json.dumps(out))


def proc_stat_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        # comm may contain spaces/parens: fields start after the last ')'.
        rest = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(rest[11]), int(rest[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def cmd_cputicks(pid):
    print(f"{proc_stat_seconds(pid):.3f}")


def read_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return math.nan


def cmd_rss(pid):
    print(f"{read_rss_mb(pid):.1f}")


def cmd_rssmon(pid, outfile, interval):
    peak = 0.0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        try:
            rss = read_rss_mb(pid)
        except OSError:
            return 0  # process gone
        if rss > peak:
            peak = rss
            # Rewrite on every new peak so the file is valid whenever we are killed.
            tmp = outfile + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{peak:.1f}\n")
            os.replace(tmp, outfile)
        time.sleep(float(interval))


def cmd_metric(url, name):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except Exception as e:
        print(f"metric: cannot fetch {url}: {e}", file=sys.stderr)
        print("nan")
        return 0
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        metric = line.split("{", 1)[0].split()[0]
        if metric == name:
            total += float(line.rsplit(None, 1)[1] if "}" not in line else line.rsplit("}", 1)[1].split()[0])
            found = True
    print(f"{total:g}" if found else "nan")
    return 0


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    fn = globals().get("cmd_" + sys.argv[1])
    if fn is None:
        print(f"unknown subcommand {sys.argv[1]}", file=sys.stderr)
        return 2
    return fn(*sys.argv[2:]) or 0


if __name__ == "__main__":
    sys.exit(main())
