"""What the partner door costs: pushes per second accepted through the Glacier2 router against
calling Push directly, and the latency the router adds (p50/p99).

    .venv/bin/python -m tools.bench_partner --run-dir run [--ssl] [--plot bench-partner.png]

Two ways to the same Push replicas, measured alike:
  * direct — the well-known `Push` object through the registry (what internal callers do), with
    the app key as a parameter. Throughput clients take its replicas in turn (IceGrid's
    findAllReplicas), so the figure is what Push itself takes; a proxy resolved per process
    sticks to one replica for good, and two processes on one replica take ~30% less;
  * router — a raw Ice partner configured by `<run>/partner.cfg`: `createSession(appKey, secret)`
    on the router, `session.pushApi()`, then `push(request)`, which crosses the router AND the
    PartnerGateway that forwards it to Push. Plain TCP to the router by default (what costs
    is the routing, not TLS); `--ssl` measures the SSL endpoint instead.

The bench app's quota is `limits.PUSH_QUOTA_MAX` pushes a minute, so the per-minute quota does
not cap the bench. Pushes name one of a few registered devices by registration id with a short
TTL: they run the whole pipeline (record, Kafka, dispatcher, offline store) while no device is
connected. Between phases the bench waits until the dispatchers have taken the last pushes, so
one phase's backlog does not slow the next.

Which Push replica accepted each push is read from its msg id (the worker bits; the descriptor
sets PushGrid.Push.WorkerId to the replica's index) and printed per phase, with the gateways the
router sessions landed on: through the router, placement is the gateways' (each sends to the one
Push replica its proxy resolved, until the connection goes idle), so a phase whose router pushes
reached fewer replicas than the direct ones says so.

The ratio is given two ways: of the median throughputs, and the median of each round's own
router/direct ratio (the two modes of a round run minutes apart, so drift on a shared machine
cancels); rounds' spread is printed too, because on a busy 2-core machine it can exceed the
router's cost.

Each round measures both modes, in alternating order: latency (one call at a time) and
throughput (N processes x M calls in flight for a fixed time after a warm-up). Figures are
medians over rounds; the router/direct throughput ratio and the added latency (router - direct,
at p50 and p99) come from those medians. Every error (RateLimited included) is counted and
printed, and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import Ice
import IceGrid

from services.common import limits, msgid
from services.common.contract import Glacier2, PushGrid
from services.common.ice import client_communicator, dbagent, push, tagalias
from tools.bench_delivery import _pct
from tools.grid.rundir import INSTANCE_NAME, ROUTER_INSTANCE_NAME, RunDir
from tools.partner import builders as b

MODES = ("direct", "router")
PENDING = (PushGrid.MessageState.Accepted, PushGrid.MessageState.Dispatching)


@dataclass(frozen=True)
class BenchApp:
    """The bench's app and the devices its pushes name; passed to every client process."""

    app_key: str
    secret: str
    regids: tuple[str, ...]


def setup(run: RunDir, devices: int) -> BenchApp:
    """Creates the app (quota PUSH_QUOTA_MAX, so the quota is not what is measured) and its devices."""
    comm = client_communicator(run.client_config)
    try:
        db, ta = dbagent(comm), tagalias(comm)
        creds = db.createApp("bench-partner-" + uuid.uuid4().hex[:8], limits.PUSH_QUOTA_MAX)
        regids = []
        for _ in range(devices):
            rid = db.registerDevice(creds.appKey, PushGrid.Platform.Android).registrationId
            ta.addDevice(creds.appKey, rid, PushGrid.Platform.Android)
            regids.append(rid)
        return BenchApp(creds.appKey, creds.masterSecret, tuple(regids))
    finally:
        comm.destroy()


def push_request(regid: str, ttl: int) -> PushGrid.PushRequest:
    """A small notification to one device: stored offline for ttl seconds, as no device is online."""
    return b.push_request(b.audience(registration_ids=[regid]), notification="bench", options=b.options(1, ttl))


class Client:
    """One client's way to Push: the well-known proxy (direct) or a partner session (router)."""

    def __init__(self, run: RunDir, mode: str, app: BenchApp, ssl: bool, replica: int | None = None) -> None:
        """replica (direct only): use the well-known object's replica number `replica` (modulo
        their count) instead of whichever the registry hands this process."""
        self.mode, self._app, self._router, self.gateway = mode, app, None, ""
        if mode == "direct":
            self.comm = client_communicator(run.client_config, "--Ice.ThreadPool.Client.Size=2")
            self._push = push(self.comm)
            if replica is not None:
                query = IceGrid.QueryPrx.uncheckedCast(self.comm.stringToProxy(f"{INSTANCE_NAME}/Query"))
                replicas = query.findAllReplicas(self._push)
                self._push = PushGrid.PushServicePrx.uncheckedCast(replicas[replica % len(replicas)])
            return
        self.comm = client_communicator(
            run.partner_config, "--Ice.ThreadPool.Client.Size=2", f"--Ice.Default.Router={router_proxy(run, ssl)}"
        )
        try:
            self._router = Glacier2.RouterPrx.checkedCast(self.comm.getDefaultRouter())
            session = PushGrid.PartnerSessionPrx.uncheckedCast(self._router.createSession(app.app_key, app.secret))
            self._push = session.pushApi()
            self.gateway = session.ice_getAdapterId()  # the gateway holding it (PartnerGateway-N.PartnerGateway)
        except BaseException:
            self.comm.destroy()
            raise

    def push_async(self, request: PushGrid.PushRequest) -> Ice.Future:
        if self._router is None:
            return self._push.pushAsync(self._app.app_key, request)
        return self._push.pushAsync(request)

    def close(self) -> None:
        """Ends the session too, so rounds never pile up toward PARTNER_SESSIONS_PER_APP."""
        if self._router is not None:
            try:
                self._router.destroySession()
            except Ice.Exception:
                pass
        self.comm.destroy()


def router_proxy(run: RunDir, ssl: bool) -> str:
    """The router on one endpoint only (partner.cfg lists SSL then TCP, and would fall back)."""
    proto, port = ("ssl", run.ports["partner-ssl"]) if ssl else ("tcp", run.ports["partner-tcp"])
    return f"{ROUTER_INSTANCE_NAME}/router:{proto} -h {run.partner_host} -p {port}"


def error_name(exc: BaseException) -> str:
    return type(exc).__name__


def replica_of(msg_id: int) -> str:
    """The Push replica that assigned msg_id (its worker bits; WorkerId is the replica's index)."""
    return f"Push-{(msg_id >> msgid.SEQUENCE_BITS) & msgid.MAX_WORKER}"


@dataclass
class Phase:
    """What one phase of one mode measured."""

    accepted: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, sorted
    errors: Counter[str] = field(default_factory=Counter)  # error name -> count (any time)
    first_error: dict[str, str] = field(default_factory=dict)
    last_ids: list[int] = field(default_factory=list)  # the newest msg ids, to wait for dispatch
    replicas: Counter[str] = field(default_factory=Counter)  # Push replica -> accepted (measured)
    gateways: list[str] = field(default_factory=list)  # where the router sessions live

    def accept(self, msg_id: int, took: float) -> None:
        self.accepted += 1
        self.latencies.append(took)
        self.replicas[replica_of(msg_id)] += 1

    @property
    def per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        """A latency percentile in ms."""
        return _pct(self.latencies, q) * 1000

    def fail(self, exc: BaseException) -> None:
        name = error_name(exc)
        self.errors[name] += 1
        self.first_error.setdefault(name, str(getattr(exc, "reason", "") or exc))

    def merge(self, other: Phase) -> None:
        self.accepted += other.accepted
        self.seconds = max(self.seconds, other.seconds)
        self.latencies = sorted(self.latencies + other.latencies)
        self.errors.update(other.errors)
        for k, v in other.first_error.items():
            self.first_error.setdefault(k, v)
        self.last_ids += other.last_ids
        self.replicas.update(other.replicas)
        self.gateways += other.gateways

    def placement(self) -> str:
        """Where the measured pushes went, e.g. `Push-1 50% Push-2 50%; 2 sessions on 2 gateways`."""
        total = sum(self.replicas.values()) or 1
        text = " ".join(f"{k} {v * 100 / total:.0f}%" for k, v in sorted(self.replicas.items()))
        if self.gateways:
            text += f"; {len(self.gateways)} sessions on {len(set(self.gateways))} gateway(s)"
        return text


# ---------------------------------------------------------------- throughput (client processes)


def _throughput_client(
    run_path: str,
    mode: str,
    index: int,
    app: BenchApp,
    ssl: bool,
    ttl: int,
    window: int,
    warmup: float,
    seconds: float,
    start: threading.Barrier,
    out: mp.Queue[tuple[str, Any]],
) -> None:
    """Keeps `window` pushes in flight; counts those answered inside the measured interval only,
    so the warm-up and the final drain of the window are not in the rate."""
    try:
        client = Client(RunDir(run_path), mode, app, ssl, replica=index)
    except BaseException as exc:  # noqa: BLE001 - a refused login or a dead router: tell the parent, free the others
        start.abort()
        out.put(("fatal", f"{mode} client could not start: {error_name(exc)}: {exc}"))
        return
    phase = Phase(seconds=seconds, gateways=[client.gateway] if client.gateway else [])
    requests = [push_request(r, ttl) for r in app.regids]
    lock = threading.Lock()
    slots = threading.Semaphore(window)
    recent: deque[int] = deque(maxlen=window)
    try:
        client.push_async(requests[0]).result()  # connect (and route) outside the measurement
        start.wait(120)
        t0 = time.monotonic() + warmup
        t1 = t0 + seconds

        def done(started: float, fut: Ice.Future) -> None:
            now = time.monotonic()
            exc = fut.exception()
            with lock:
                if exc is not None:
                    phase.fail(exc)
                else:
                    msg = fut.result().msgId
                    recent.append(msg)
                    if t0 <= now < t1:
                        phase.accept(msg, now - started)
            slots.release()

        i = 0
        while time.monotonic() < t1:
            slots.acquire()
            started = time.monotonic()
            client.push_async(requests[i % len(requests)]).add_done_callback(lambda fut, s=started: done(s, fut))
            i += 1
        for _ in range(window):
            slots.acquire()
        phase.latencies.sort()
        phase.last_ids = list(recent)
        out.put(("ok", phase))
    except BaseException as exc:  # noqa: BLE001 - whatever ends a client, the parent must hear of it
        out.put(("fatal", f"{mode} client failed: {error_name(exc)}: {exc}"))
    finally:
        client.close()


def throughput(run: RunDir, mode: str, app: BenchApp, args: argparse.Namespace) -> Phase:
    """N client processes started together (a barrier after their logins), merged."""
    ctx = mp.get_context("spawn")  # fresh interpreters: no Ice threads carried over by fork
    out = ctx.Queue()
    start = ctx.Barrier(args.clients)
    procs = [
        ctx.Process(
            target=_throughput_client,
            args=(run.path, mode, i, app, args.ssl, args.ttl, args.window, args.warmup, args.seconds, start, out),
        )
        for i in range(args.clients)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=args.warmup + args.seconds + 180) for _ in procs]
    for p in procs:
        p.join()
    fatal = [r[1] for r in results if r[0] == "fatal"]
    if fatal:
        raise SystemExit("\n".join(fatal))
    total = Phase()
    for _, phase in results:
        total.merge(phase)
    return total


# ---------------------------------------------------------------- latency (one call at a time)


def latency(run: RunDir, mode: str, app: BenchApp, args: argparse.Namespace) -> Phase:
    """Sequential pushes on one connection: the time of a call alone, with nothing queued ahead."""
    client = Client(run, mode, app, args.ssl)
    phase = Phase(gateways=[client.gateway] if client.gateway else [])
    requests = [push_request(r, args.ttl) for r in app.regids]
    try:
        for i in range(args.latency_warmup + args.calls):
            started = time.perf_counter()
            try:
                result = client.push_async(requests[i % len(requests)]).result()
            except Ice.Exception as exc:
                phase.fail(exc)
                continue
            took = time.perf_counter() - started
            phase.last_ids = [result.msgId]
            if i >= args.latency_warmup:
                phase.accept(result.msgId, took)
        phase.latencies.sort()
        return phase
    finally:
        client.close()


def wait_dispatched(run: RunDir, app: BenchApp, msg_ids: list[int], timeout: float) -> float:
    """Waits until the dispatchers have taken msg_ids (the newest of a phase), so its backlog does
    not slow the next phase. Returns the seconds waited (or timeout, said out loud)."""
    if not msg_ids or timeout <= 0:
        return 0.0
    comm = client_communicator(run.client_config)
    try:
        svc, started, shown = push(comm), time.monotonic(), 0.0
        ids = msg_ids[-limits.MSG_IDS_PER_REPORT :]
        while True:
            pending = [s for s in svc.report(app.app_key, ids) if s.state in PENDING]
            waited = time.monotonic() - started
            if not pending:
                return waited
            if waited > timeout:
                print(
                    f"    dispatchers still have {len(pending)} of the phase's last {len(ids)} "
                    f"pushes after {timeout:.0f} s; going on",
                    flush=True,
                )
                return waited
            if waited - shown >= 10:
                shown = waited
                print(
                    f"    waiting for the dispatchers: {len(pending)} of the last {len(ids)} "
                    f"pushes not taken yet ({waited:.0f} s)",
                    flush=True,
                )
            time.sleep(0.5)
    finally:
        comm.destroy()


# ---------------------------------------------------------------- summary


def summarize(rounds: list[dict[str, dict[str, Phase]]]) -> dict[str, Any]:
    """Medians over rounds per mode, the router/direct throughput ratio and the added latency
    (router median minus direct median at p50 and p99), and every error of every phase."""
    s: dict[str, Any] = {}
    for mode in MODES:
        tp = [r[mode]["throughput"] for r in rounds]
        lat = [r[mode]["latency"] for r in rounds]
        errors: Counter[str] = Counter()
        for ph in tp + lat:
            errors.update(ph.errors)
        placed = Phase()
        for ph in tp:
            placed.replicas.update(ph.replicas)
            placed.gateways += ph.gateways
        s[mode] = {
            "per_s": statistics.median(p.per_second for p in tp),
            "loaded_p50": statistics.median(p.p(0.5) for p in tp),
            "loaded_p99": statistics.median(p.p(0.99) for p in tp),
            "p50": statistics.median(p.p(0.5) for p in lat),
            "p99": statistics.median(p.p(0.99) for p in lat),
            "errors": errors,
            "placement": placed.placement(),
        }
    d, r = s["direct"], s["router"]
    s["ratio"] = r["per_s"] / d["per_s"] if d["per_s"] else float("nan")
    s["round_ratios"] = [
        x["router"]["throughput"].per_second / x["direct"]["throughput"].per_second
        if x["direct"]["throughput"].per_second
        else float("nan")
        for x in rounds
    ]
    s["paired_ratio"] = statistics.median(s["round_ratios"])
    s["fewer_replicas"] = sum(
        len(x["router"]["throughput"].replicas) < len(x["direct"]["throughput"].replicas) for x in rounds
    )
    s["added_p50"] = r["p50"] - d["p50"]
    s["added_p99"] = r["p99"] - d["p99"]
    return s


def plot(
    path: str, rounds: list[dict[str, dict[str, Phase]]], s: dict[str, Any], labels: dict[str, str], title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    colors = {"direct": "#4477aa", "router": "#ee6677"}
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, mode in enumerate(MODES):
        bars.bar(i, s[mode]["per_s"], color=colors[mode], label=labels[mode])
        runs = [r[mode]["throughput"].per_second for r in rounds]
        bars.plot([i] * len(runs), runs, "k.", alpha=0.6)
        bars.text(i, s[mode]["per_s"], f"{s[mode]['per_s']:,.0f}/s", ha="center", va="bottom")
    bars.set_xticks(range(len(MODES)), [labels[m] for m in MODES])
    bars.set_ylabel("accepted pushes per second (median; dots: rounds)")
    bars.set_title(f"throughput: router/direct = {s['ratio']:.2f} (paired by round {s['paired_ratio']:.2f})")
    for mode in MODES:
        lat = sorted(x * 1000 for r in rounds for x in r[mode]["latency"].latencies)
        if lat:
            cdf.plot(
                lat,
                [(k + 1) / len(lat) for k in range(len(lat))],
                color=colors[mode],
                label=f"{labels[mode]}: p50 {s[mode]['p50']:.2f}, p99 {s[mode]['p99']:.2f} ms",
            )
    for q in (0.5, 0.99):
        cdf.axhline(q, color="grey", lw=0.5, ls=":")
    cdf.set_xscale("log")
    cdf.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    cdf.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    cdf.set_xlabel("push latency, one call at a time (ms, log)")
    cdf.set_ylabel("fraction of calls")
    cdf.set_title(f"added by the router: p50 {s['added_p50']:+.2f} ms, p99 {s['added_p99']:+.2f} ms")
    cdf.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="run")
    parser.add_argument("--clients", type=int, default=2, help="client processes (throughput)")
    parser.add_argument("--window", type=int, default=8, help="pushes in flight per client process")
    parser.add_argument("--seconds", type=float, default=10, help="measured time of a throughput phase")
    parser.add_argument("--warmup", type=float, default=3, help="unmeasured seconds before it")
    parser.add_argument("--calls", type=int, default=300, help="sequential pushes of a latency phase")
    parser.add_argument("--latency-warmup", type=int, default=20, help="unmeasured pushes before them")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of both modes (medians)")
    parser.add_argument("--devices", type=int, default=4, help="devices the pushes name")
    parser.add_argument("--ttl", type=int, default=60, help="time to live of the pushes (s)")
    parser.add_argument("--ssl", action="store_true", help="reach the router on its SSL endpoint")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300,
        help="wait at most this long for the dispatchers between phases (0: never)",
    )
    parser.add_argument("--plot", default="bench-partner.png")
    args = parser.parse_args()

    run = RunDir(args.run_dir)
    door = "ssl" if args.ssl else "tcp"
    labels = {"direct": "direct (Push)", "router": f"router ({door}) + gateway"}
    print(
        f"[setup] app with quota limits.PUSH_QUOTA_MAX = {limits.PUSH_QUOTA_MAX:,} pushes/min "
        f"(so the quota does not cap the bench), {args.devices} devices, ttl {args.ttl} s; "
        f"router at {router_proxy(run, args.ssl)}",
        flush=True,
    )
    app = setup(run, args.devices)

    rounds: list[dict[str, dict[str, Phase]]] = []
    for n in range(args.rounds):
        order = MODES if n % 2 == 0 else MODES[::-1]
        result: dict[str, dict[str, Phase]] = {}
        for mode in order:
            tag = f"[round {n + 1}/{args.rounds}] {mode:<6}"
            print(f"{tag} latency: {args.calls} sequential pushes ...", flush=True)
            lat = latency(run, mode, app, args)
            print(
                f"{tag} latency: p50 {lat.p(0.5):.2f} ms  p99 {lat.p(0.99):.2f} ms  errors {_errors(lat.errors)}",
                flush=True,
            )
            wait_dispatched(run, app, lat.last_ids, args.drain_timeout)
            print(
                f"{tag} throughput: {args.clients} processes x {args.window} in flight, "
                f"{args.warmup:g} s warm-up + {args.seconds:g} s ...",
                flush=True,
            )
            tp = throughput(run, mode, app, args)
            print(
                f"{tag} throughput: {tp.per_second:8.0f} pushes/s  loaded p50 {tp.p(0.5):.2f} ms  "
                f"p99 {tp.p(0.99):.2f} ms  errors {_errors(tp.errors)}  ({tp.placement()})",
                flush=True,
            )
            waited = wait_dispatched(run, app, tp.last_ids, args.drain_timeout)
            print(f"{tag} dispatchers caught up after {waited:.1f} s", flush=True)
            for name, text in {**lat.first_error, **tp.first_error}.items():
                print(f"    {name}: {text}", flush=True)
            result[mode] = {"latency": lat, "throughput": tp}
        rounds.append(result)
        ratio = result["router"]["throughput"].per_second / max(result["direct"]["throughput"].per_second, 1e-9)
        print(f"[round {n + 1}/{args.rounds}] router/direct throughput {ratio:.2f}", flush=True)

    s = summarize(rounds)
    print(
        f"\nmedian of {args.rounds} rounds; throughput: {args.clients} processes x {args.window} in flight "
        f"for {args.seconds:g} s after {args.warmup:g} s warm-up; latency: {args.calls} sequential pushes"
    )
    print(f"{'mode':<26} {'pushes/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'loaded p50':>11} {'loaded p99':>11}  errors")
    for mode in MODES:
        m = s[mode]
        print(
            f"{labels[mode]:<26} {m['per_s']:9.0f} {m['p50']:8.2f} {m['p99']:8.2f} "
            f"{m['loaded_p50']:11.2f} {m['loaded_p99']:11.2f}  {_errors(m['errors'])}"
        )
    for mode in MODES:
        runs = sorted(r[mode]["throughput"].per_second for r in rounds)
        print(f"  {labels[mode]} throughput over rounds: {runs[0]:.0f} .. {runs[-1]:.0f} pushes/s")
    print(
        f"throughput router/direct: {s['ratio']:.2f} (of the medians); "
        f"{s['paired_ratio']:.2f} (median of rounds: {', '.join(f'{x:.2f}' for x in s['round_ratios'])})"
    )
    print(f"latency added by the router: p50 {s['added_p50']:+.2f} ms, p99 {s['added_p99']:+.2f} ms")
    for mode in MODES:
        print(f"throughput pushes accepted by ({labels[mode]}, all rounds): {s[mode]['placement']}")
    if s["fewer_replicas"]:
        print(
            f"note: in {s['fewer_replicas']} of {len(rounds)} rounds the router's pushes reached fewer Push "
            "replicas than the direct ones (each gateway sends to the one its proxy resolved): "
            "the ratio includes that placement"
        )

    title = (
        f"pushgrid partner door ({door}): {args.clients} x {args.window} in flight, "
        f"{args.seconds:g} s; {args.calls} sequential calls; median of {args.rounds} rounds"
    )
    plot(args.plot, rounds, s, labels, title)
    print(f"plot saved to {args.plot}")
    errors = sum(sum(s[m]["errors"].values()) for m in MODES)
    if errors:
        print(f"{errors} calls failed (see above): the figures count accepted pushes only", file=sys.stderr)
    return 1 if errors else 0


def _errors(errors: Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) if errors else "0"


if __name__ == "__main__":
    sys.exit(main())
