"""The inference gateway under load: the 20-feature logistic regression of the serving
reference (shared/reference/serving.md), registered, validated and approved into Production
through the `vigil` CLI, then served by `vigil gateway` and driven by wrk.

    cargo build --release -p vigil-cli && cargo build --release -p vigil-gateway --example unlogged_gateway
    apt-get install wrk
    python3 bench/gateway_bench.py [SECONDS] [ROUNDS] [log|shadow]

Scenarios as in the reference's measurements of MLServer and `mlflow models serve`: single-row
and 100-row requests at 16 connections, single-row at 1 connection, through the Open
Inference Protocol and MLflow's /invocations. CPU per request is the gateway process's
user+system time (from /proc) over the requests wrk completed, until every record of the run
is stored (the prediction log's writer, syncer, preparer and shipper threads run in the same
process and are included); RSS is read after the single-row runs and at the end; disk is the
bytes the process had written to disk per request (/proc/PID/io: its spool and its registry
database), over the same span.

The prediction log compresses what it writes, and one fixed body (the peers' harness)
compresses far better than real inputs. So the 100-row scenario also runs with 300
different bodies sent in turn: clinical-like raw values (ages, vital signs and counts as whole
numbers, labs with one or two decimals, flags) and standard-normal noise to 4 decimals
(the worst case: it hardly compresses).

`vigil gateway` always logs every prediction. To measure what the log costs, the single-row
scenario (plain, and A/B by a patient header) runs against `unlogged_gateway` too (an
example binary: the same gateway without a spool, with the same allocator and options; a
reference point, never a way to serve). The processes run at once and follow the same
registry; the three take turns, ROUNDS times (each round in the next of the six orders of
three, so that in 6 rounds each binary runs first, second and third, and after each of the
others, equally often: with the order flipped instead, `vigil gateway` always ran second),
and the medians are compared: this shared machine's load drifts between runs.

Two loads: saturation (wrk sends as fast as the gateway answers; wrk and the gateway share
the 2 cores) and a paced load (each of the 16 connections waits PACE_MS after every answer:
a fixed offered load, as a gateway runs in service: half the saturated rate on one machine
of this kind, a quarter on a faster one). A third process runs at both
loads: `unlogged_gateway --log`, the reference binary with the log on, so the log's cost is
also measured within one binary (`vigil gateway` is a larger binary, 35 MB of code against
10; it measured 1.4-3.7 points above the reference binary with the same log while it always
ran second, and alike, within the noise, once the order rotated). The primary's p99
with a shadow copy of every request is compared the same way at both loads, interleaved with runs without the shadow.
The online-feature scenario loads
20 features for 1,000 patients into the embedded store and asks by patient id; the lookup
time is read from the gateway's histogram at /metrics.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIGIL = ROOT / "target" / "release" / "vigil"
UNLOGGED = ROOT / "target" / "release" / "examples" / "unlogged_gateway"
FIXTURE = ROOT / "crates" / "vigil-onnx" / "tests" / "fixtures" / "lr20_binary.onnx"
SECONDS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
# `log`: only the comparisons of the log's cost (the single-row runs against the unlogged
# reference), for working on the log; `shadow`: only the shadow's comparisons.
ONLY_LOG = len(sys.argv) > 3 and sys.argv[3] == "log"
ONLY_SHADOW = len(sys.argv) > 3 and sys.argv[3] == "shadow"
PW = "bench-passw0rd"
TICK = os.sysconf("SC_CLK_TCK")
PACE_MS = 1


def vigil(data: Path, *args: str, user: str | None = None) -> str:
    env = {**os.environ, "VIGIL_PASSWORD": PW, "VIGIL_NEW_PASSWORD": PW}
    cmd = [str(VIGIL), "--data-dir", str(data)] + (["--user", user] if user else []) + list(args)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def setup(tmp: Path) -> Path:
    data = tmp / "store"
    vigil(data, "init", "--admin", "admin", "--name", "Ada Admin")
    for uid, name, role in (("ds", "Dana Scientist", "data_scientist"), ("lead", "Lee Lead", "ml_lead"), ("clin", "Dr. Cleo Reviewer", "clinical_reviewer")):
        vigil(data, "user", "add", uid, "--role", role, "--name", name, user="admin")
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"require_card_complete": False}))
    vigil(data, "policy", "validation", "set", "--model-type", "classification", "--file", str(policy), "--reason", "bench model has a partial card", user="admin")
    model = tmp / "lr20.onnx"
    shutil.copy(FIXTURE, model)
    manifest = tmp / "m.json"
    manifest.write_text(json.dumps({"name": "lr20", "version": "1.0.0", "model_type": "classification", "artifact_uri": str(model),
                                    "artifact_sha256": hashlib.sha256(model.read_bytes()).hexdigest(),
                                    "lineage": {"training_data_hash": "sha256:bench", "features": [f"f{i}" for i in range(20)]},
                                    "card": {"intended_use": "benchmark"}}))
    vigil(data, "model", "register", "--manifest", str(manifest), user="ds")
    holdout = tmp / "holdout.csv"
    import random
    rnd = random.Random(5)
    lines = ["y,score,sex"]
    for i in range(400):
        y = rnd.random() < 0.4
        lines.append(f"{int(y)},{min(1.0, 0.5 * y + 0.5 * rnd.random()):.4f},{'F' if i % 2 else 'M'}")
    holdout.write_text("\n".join(lines) + "\n")
    vigil(data, "validate", "lr20@1.0.0", "--data", str(holdout), "--label", "y", "--score", "score", "--sensitive", "sex", user="ds")
    req = json.loads(vigil(data, "--json", "promote", "request", "lr20@1.0.0", "--to", "production", "--justification", "bench", user="ds"))["request_id"]
    for signer in ("lead", "clin"):
        vigil(data, "promote", "approve", req, "--comment", "ok", user=signer)
    # A second version in Staging, for the A/B and shadow scenarios.
    m2 = json.loads(manifest.read_text())
    m2["version"] = "1.1.0"
    manifest.write_text(json.dumps(m2))
    vigil(data, "model", "register", "--manifest", str(manifest), user="ds")
    req = json.loads(vigil(data, "--json", "promote", "request", "lr20@1.1.0", "--to", "staging", "--justification", "bench", user="ds"))["request_id"]
    vigil(data, "promote", "approve", req, "--comment", "ok", user="lead")
    # The embedded online store: 20 features for patients P1..P1000.
    rnd = random.Random(9)
    feats = tmp / "features.csv"
    feats.write_text("patient_id," + ",".join(f"f{i}" for i in range(20)) + "\n"
                     + "".join(f"P{p}," + ",".join(f"{rnd.gauss(0, 1):.4f}" for _ in range(20)) + "\n" for p in range(1, 1001)))
    vigil(data, "features", "load", str(feats), "--set", "lr20_features", "--entity", "patient_id", user="ds")
    return data


def written(pid: int) -> int:
    """Bytes the process has had written to disk (its spool and its registry database)."""
    return int(re.search(r"write_bytes: (\d+)", Path(f"/proc/{pid}/io").read_text()).group(1))


def clinical_row(rnd) -> list:
    """20 values as a clinical model's raw inputs look: ages, vital signs and counts (whole
    numbers), lab values with one or two decimals, flags."""
    g, ln, i = rnd.gauss, rnd.lognormvariate, rnd.randint
    return [i(18, 95), i(40, 180), i(80, 200), i(40, 120), i(8, 40), round(g(36.8, 0.7), 1), round(g(140, 4)), round(g(4.2, 0.5), 1),
            round(ln(0, 0.5), 2), round(g(13, 2), 1), round(ln(2, 0.6), 1), round(g(7.4, 0.05), 2), i(0, 1), i(0, 1), i(0, 1), i(0, 4),
            round(g(27, 5), 1), round(ln(0.5, 0.7), 2), i(0, 29), round(g(95, 3))]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory: `VmRSS` (now) by default; `VmHWM` is the peak since the process started (since its exec)."""
    m = re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


def wrk(url: str, path: str, body: str | list[str], ctype: str, conns: int, tmp: Path, patient: bool = False, entity: bool = False, paced: bool = False) -> dict:
    script = tmp / "post.lua"
    # With `patient`, every request carries a different patient id (the unit key); with
    # `entity`, the body is only a patient id (P1..P1000 in turn), for the online store; a
    # list of bodies is sent in turn.
    extra = ('counter = 0\nrequest = function()\n  counter = counter + 1\n  wrk.headers["x-patient-id"] = "MRN-" .. counter\n'
             '  return wrk.format(nil, nil, nil, nil)\nend\n') if patient else ""
    if isinstance(body, list):
        extra = ("local bodies = {" + ",".join(json.dumps(b) for b in body) + "}\ncounter = 0\nrequest = function()\n"
                 "  counter = counter % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[counter])\nend\n")
        body = body[0]
    if entity:
        extra = ('counter = 0\nrequest = function()\n  counter = counter + 1\n'
                 '  local b = \'{"inputs": [{"name": "patient_id", "shape": [1], "datatype": "BYTES", "data": ["P\' .. (counter % 1000 + 1) .. \'"]}]}\'\n'
                 '  return wrk.format(nil, nil, nil, b)\nend\n')
    if paced:
        # Each connection waits PACE_MS after every answer: an offered load of about half
        # what the gateway answers at saturation, the same for the gateways compared.
        extra += f"function delay()\n  return {PACE_MS}\nend\n"
    script.write_text(f'wrk.method = "POST"\nwrk.headers["content-type"] = "{ctype}"\nwrk.body = {json.dumps(body)}\n{extra}')
    out = subprocess.run(["wrk", "-t", "1" if conns == 1 else "2", "-c", str(conns), "-d", f"{SECONDS}s", "--latency", "-s", str(script), url + path],
                         check=True, capture_output=True, text=True).stdout
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def lat(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * unit[m.group(2)] if m else float("nan")
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": reqs, "rps": reqs / SECONDS, "p50": lat("50"), "p99": lat("99"), "errors": int(errors.group(1)) if errors else 0}


def start(cmd: list[str]) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    # `vigil gateway` restarts itself with these mimalloc options unless they are set; the
    # unlogged reference binary gets them directly, so both run with the same allocator settings.
    env.setdefault("MIMALLOC_ARENA_EAGER_COMMIT", "0")
    env.setdefault("MIMALLOC_PURGE_DELAY", "10")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
    time.sleep(0.5)
    return proc, url


def lookup_percentiles(url: str) -> str:
    """p50 and p99 of the online feature lookups, from the gateway's histogram at /metrics
    (linear within a bucket)."""
    buckets = []
    for line in urllib.request.urlopen(url + "/metrics").read().decode().splitlines():
        m = re.match(r'vigil_gateway_feature_lookup_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            buckets.append((float(m.group(1)), int(m.group(2))))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no lookups"

    def q(p: float) -> float:
        want, lo, below = p * total, 0.0, 0
        for le, n in buckets:
            if n >= want:
                hi = le if le != float("inf") else lo
                return (lo + (hi - lo) * (want - below) / max(n - below, 1)) * 1000
            lo, below = le, n
        return float("nan")
    return f"{total} lookups: p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms"


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    data = setup(tmp)
    import random
    rnd = random.Random(1)
    row = [round(rnd.gauss(0, 1), 4) for _ in range(20)]
    rows = [[round(rnd.gauss(0, 1), 4) for _ in range(20)] for _ in range(100)]
    oip1 = json.dumps({"inputs": [{"name": "X", "shape": [1, 20], "datatype": "FP32", "data": row}]})
    oip100 = json.dumps({"inputs": [{"name": "X", "shape": [100, 20], "datatype": "FP32", "data": [x for r in rows for x in r]}]})
    ml1 = json.dumps({"dataframe_split": {"columns": [f"f{i}" for i in range(20)], "data": [row]}})
    ml100 = json.dumps({"dataframe_split": {"columns": [f"f{i}" for i in range(20)], "data": rows}})

    def oip(rows: list) -> str:
        return json.dumps({"inputs": [{"name": "X", "shape": [len(rows), 20], "datatype": "FP32", "data": [x for r in rows for x in r]}]})
    # One fixed body per scenario, as the peers were measured; and 300 different 100-row
    # bodies sent in turn: the prediction log compresses what it writes, and a fixed body
    # compresses far better than real inputs do.
    crnd, nrnd = random.Random(2), random.Random(3)
    clinical100 = [oip([clinical_row(crnd) for _ in range(100)]) for _ in range(300)]
    noise100 = [oip([[round(nrnd.gauss(0, 1), 4) for _ in range(20)] for _ in range(100)]) for _ in range(300)]
    scenarios = [
        ("OIP, 1 row, 16 connections", "/v2/models/lr20/infer", oip1, "application/json", 16),
        ("OIP, 100 rows, 16 connections", "/v2/models/lr20/infer", oip100, "application/json", 16),
        ("OIP, 100 rows, 16 conn., 300 clinical-like bodies", "/v2/models/lr20/infer", clinical100, "application/json", 16),
        ("OIP, 100 rows, 16 conn., 300 noise bodies", "/v2/models/lr20/infer", noise100, "application/json", 16),
        ("OIP, 1 row, 1 connection", "/v2/models/lr20/infer", oip1, "application/json", 1),
        ("MLflow split, 1 row, 16 connections", "/invocations", ml1, "application/json", 16),
        ("MLflow split, 100 rows, 16 connections", "/invocations", ml100, "application/json", 16),
        ("MLflow split, 1 row, 1 connection", "/invocations", ml1, "application/json", 1),
    ]
    print(f"lr20 (20-feature logistic regression), wrk {SECONDS} s per scenario, {ROUNDS} rounds of the compared pairs")
    print(f"{'scenario':<52} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'errors':>7} {'disk B/req':>10}")

    def drained(proc, url) -> None:
        # Until every queued record is stored (or the spool gave up on it), so that each
        # scenario's CPU includes all of its logging work and none of the previous one's.
        if proc.args[0] == str(UNLOGGED) and "--log" not in proc.args:
            return
        for _ in range(1200):
            m = dict(l.split(" ") for l in urllib.request.urlopen(url + "/metrics").read().decode().splitlines() if l.startswith("vigil_gateway_log"))
            if int(m["vigil_gateway_log_stored_total"]) + int(m["vigil_gateway_log_failed_total"]) >= int(m["vigil_gateway_log_queued_total"]):
                return
            time.sleep(0.1)

    def run(proc, url, name, path, body, ctype, conns, patient=False, entity=False, paced=False) -> dict:
        before, wrote = cpu_ticks(proc.pid), written(proc.pid)
        r = wrk(url, path, body, ctype, conns, tmp, patient, entity, paced)
        drained(proc, url)
        r["cpu"] = (cpu_ticks(proc.pid) - before) / TICK * 1000 / max(r["requests"], 1)
        r["disk"] = (written(proc.pid) - wrote) / max(r["requests"], 1)
        print(f"{name:<52} {r['rps']:>8.0f} {r['p50']:>8.3f} {r['p99']:>8.3f} {r['cpu']:>11.3f} {r['errors']:>7} {r['disk']:>10.0f}", flush=True)
        return r

    def deploy(*args):
        vigil(data, "deploy", "lr20", *args, "--reason", "bench", user="lead")
        time.sleep(1.5)  # the gateways follow the registry every second

    def counters(url) -> dict:
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        return {k.removeprefix("vigil_gateway_").removesuffix("_total"): int(float(v)) for k, v in (l.split(" ") for l in metrics.splitlines() if l.startswith("vigil_gateway_") and "{" not in l)}

    med = statistics.median
    # What the log costs: the same gateway without a spool (`unlogged_gateway`) beside
    # `vigil gateway`, both following the same registry, the compared runs interleaved and
    # repeated (the machine's load drifts between runs; one pair does not resolve 10%).
    unlogged, uurl = start([str(UNLOGGED), str(data), "127.0.0.1:0"])
    # The reference binary with its log on: the log's cost within one binary (a control on
    # the comparison of two binaries), measured at both loads.
    logged_ref, rurl = start([str(UNLOGGED), str(data), "127.0.0.1:0", "--log"])
    proc, url = start([str(VIGIL), "--data-dir", str(data), "gateway", "--addr", "127.0.0.1:0"])
    names = {"U": "UNLOGGED", "L": "LOGGED", "R": "LOGGED (reference binary --log)"}
    try:
        cost: dict[str, list[float]] = {}
        for rnd_i in range(0 if ONLY_SHADOW else ROUNDS):
            trio = list(itertools.permutations([("U", unlogged, uurl), ("L", proc, url), ("R", logged_ref, rurl)]))[rnd_i % 6]
            for mode, args, patient in (("plain", ("--reset",), False), ("ab", ("--ab", "production=50,1.1.0=50", "--unit-key", "header:x-patient-id"), True)):
                deploy(*args)
                what = "OIP, 1 row, 16 conn." + (", A/B by patient" if patient else "")
                # At saturation (wrk as fast as it can) and at the paced load, all three.
                for tag, p, u in trio:
                    cost.setdefault(f"{mode} sat {tag}", []).append(run(p, u, f"{names[tag]} {what}", "/v2/models/lr20/infer", oip1, "application/json", 16, patient=patient)["cpu"])
                for tag, p, u in trio:
                    cost.setdefault(f"{mode} paced {tag}", []).append(run(p, u, f"{names[tag]} {what}, paced", "/v2/models/lr20/infer", oip1, "application/json", 16, patient=patient, paced=True)["cpu"])
        for p in (unlogged, logged_ref):
            p.kill()
            p.wait()
        for k in ("plain", "ab") if not ONLY_SHADOW else ():
            for load in ("sat", "paced"):
                for tag in ("L", "R"):
                    us, ls = cost[f"{k} {load} U"], cost[f"{k} {load} {tag}"]
                    u, l = med(us), med(ls)
                    print(f"median CPU/request {'A/B by patient' if k == 'ab' else 'plain'}, {'saturated' if load == 'sat' else 'paced'}: {names[tag].lower()} {l:.4f} ms, unlogged {u:.4f} ms: {100 * (l / u - 1):+.1f}% "
                          f"(per round: {', '.join(f'{100 * (b / a - 1):+.0f}%' for a, b in zip(us, ls))})", flush=True)
        # The target read the other way: A/B routing and the log together, against the plain
        # deployment without the log (the A/B runs' wrk builds each request in Lua, to give it
        # a patient id: at saturation that takes CPU the gateway would otherwise have had).
        for load in ("sat", "paced") if not ONLY_SHADOW else ():
            us, abs_ = cost[f"plain {load} U"], cost[f"ab {load} U"]
            print(f"median CPU/request, {'saturated' if load == 'sat' else 'paced'}: A/B by patient unlogged {med(abs_):.4f} ms against plain unlogged {med(us):.4f} ms: {100 * (med(abs_) / med(us) - 1):+.1f}% (A/B's own cost)", flush=True)
            for tag in ("L", "R"):
                ls = cost[f"ab {load} {tag}"]
                print(f"median CPU/request, {'saturated' if load == 'sat' else 'paced'}: A/B by patient {names[tag].lower()} {med(ls):.4f} ms against plain unlogged {med(us):.4f} ms: {100 * (med(ls) / med(us) - 1):+.1f}% "
                      f"(per round: {', '.join(f'{100 * (b / a - 1):+.0f}%' for a, b in zip(us, ls))})", flush=True)
        if ONLY_LOG:
            return
        deploy("--reset")
        print(f"resident memory after the single-row runs: {rss_mb(proc.pid):.1f} MB")
        for name, path, body, ctype, conns in scenarios if not ONLY_SHADOW else ():
            run(proc, url, name, path, body, ctype, conns)
        # A shadow copy of every request, interleaved with runs without one, at saturation and
        # at the paced load.
        for paced in (False, True):
            p99: dict[str, list[float]] = {"off": [], "on": []}
            before = counters(url)
            errors = 0
            for rnd_i in range(ROUNDS):
                for mode in (("off", "on") if rnd_i % 2 == 0 else ("on", "off")):
                    deploy(*(("--shadow", "1.1.0=100") if mode == "on" else ("--reset",)))
                    r = run(proc, url, f"OIP, 1 row, 16 conn., shadow {mode}{', paced' if paced else ''}", "/v2/models/lr20/infer", oip1, "application/json", 16, paced=paced)
                    p99[mode].append(r["p99"])
                    errors += r["errors"]
            after = counters(url)
            off, on = med(p99["off"]), med(p99["on"])
            print(f"median primary p99, {'paced' if paced else 'saturated'}: shadow off {off:.2f} ms, 100% shadow {on:.2f} ms: {100 * (on / off - 1):+.1f}%; primary errors {errors}")
            d = {k: after.get(k, 0) - before.get(k, 0) for k in ("shadow_queued", "shadow_dropped", "shadow_ok", "shadow_failed")}
            offered = d["shadow_queued"] + d["shadow_dropped"]
            print(f"shadow copies: {offered} offered, {d['shadow_ok']} run and logged ({100 * d['shadow_ok'] / max(offered, 1):.0f}%), "
                  f"{d['shadow_dropped']} dropped (queue full while the CPUs were busy), {d['shadow_failed']} failed", flush=True)
        if ONLY_SHADOW:
            return
        deploy("--reset", "--features", json.dumps({"entity": "patient_id", "source": "embedded", "feature_set": "lr20_features"}))
        run(proc, url, "OIP, patient id -> embedded features, 1 conn.", "/v2/models/lr20/infer", "", "application/json", 1, entity=True)
        run(proc, url, "OIP, patient id -> embedded features, 16 conn.", "/v2/models/lr20/infer", "", "application/json", 16, entity=True)
        drained(proc, url)
        c = counters(url)
        print("prediction log:", ", ".join(f"{k} {v}" for k, v in c.items() if k.startswith("log_") or "spool" in k))
        print("online feature lookup (gateway histogram):", lookup_percentiles(url))
        print(f"resident memory after the runs: {rss_mb(proc.pid):.1f} MB (peak during the bench: {rss_mb(proc.pid, 'VmHWM'):.1f} MB)")
    finally:
        for p in (unlogged, logged_ref, proc):
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
