"""Where the time goes: the pipeline throughput benchmark with py-spy sampling every cluster.

    .venv/bin/python bench/profile.py [--tokens 1000] [--clusters 1] [--rate 100] [--batch-size N] [--cpu]

py-spy samples each cluster's processes (idle samples included, so waiting on PostgreSQL or
JSON-RPC counts as time spent) for the whole run. Only samples taken inside one of our tasks are
counted: the table shows, as a share of that task time, the tasks, our functions (inclusive) and
what the time is finally spent on (the innermost frame, by library). The raw stacks are kept in
bench/results/ for flame graphs (flamegraph.pl or speedscope read them).
"""

from __future__ import annotations

import argparse
import linecache
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, ROOT, write_results
from bench.pipeline import throughput

PY_SPY = Path(sys.executable).parent / "py-spy"
OURS = ("lifecycle/", "chain/", "glisk/", "authors/")
TASK_MODULES = ("lifecycle/tasks.py", "chain/tasks.py")

# The innermost frame's file, first match wins: what a sample's time is spent on.
SPENT_ON = (
    ("psycopg", "PostgreSQL: sending queries and waiting for rows (psycopg)"),
    ("django/db/", "Django ORM: building SQL, rows into objects"),
    ("django_q/", "django-q2: queue bookkeeping"),
    ("urllib3/", "HTTP to the chain (requests/urllib3)"),
    ("requests/", "HTTP to the chain (requests/urllib3)"),
    ("http/client.py", "HTTP to the chain (requests/urllib3)"),
    ("socket.py", "HTTP to the chain (requests/urllib3)"),
    ("PIL/", "image rendering (Pillow)"),
    ("eth_account/", "signing the reveal (eth-account, eth-keys)"),
    ("eth_keys/", "signing the reveal (eth-account, eth-keys)"),
    ("eth_abi/", "ABI encoding (eth-abi)"),
    ("eth_utils/", "ABI encoding (eth-abi)"),
    ("multiformats", "CID computation (multiformats)"),
    ("aleph", "CID computation (multiformats)"),
    ("hashlib", "CID computation (multiformats)"),
    ("json/", "JSON"),
    ("logging/", "logging"),
    ("threading.py", "waiting on a stage's worker threads"),
    ("concurrent/futures", "waiting on a stage's worker threads"),
    ("time.py", "sleeping (backoff, batch wait)"),
)


def relative(path: str) -> str:
    root = str(ROOT) + "/"
    return path[len(root) :] if path.startswith(root) else path


def parse(line: str) -> tuple[list[tuple[str, str]], int, bool]:
    """One raw py-spy line: `frame;frame;... count`, a frame being `function (path:line)`.

    Returns the frames without line numbers, the count, and whether the innermost frame is a
    `sleep(` call (a loop waiting on purpose: the watcher's poll, the batch wait, a backoff)."""
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = []
    sleeping = False
    for frame in stack.split(";"):
        if frame.startswith("process ") or " (" not in frame:
            continue
        function, _, location = frame.rpartition(" (")
        path, _, lineno = location.rstrip(")").rpartition(":")
        frames.append((function, relative(path)))
        sleeping = lineno.isdigit() and "sleep(" in linecache.getline(path, int(lineno))
    return frames, int(count), sleeping


def spent_on(frames: list[tuple[str, str]], sleeping: bool) -> str:
    """`frames` from the task's frame inwards."""
    if sleeping:
        return "sleeping on purpose (watcher poll interval, batch wait, backoff)"
    if any(function in ("<module>", "_find_and_load") for function, _ in frames):
        return "importing modules (once per worker process)"
    for function, path in reversed(frames):
        if path.startswith(OURS):
            return f"our code: {function} ({path})"
        for marker, label in SPENT_ON:
            if marker in path:
                return label
    function, path = frames[-1]
    return f"other: {function} ({path})"


def summarise(raw_files: list[Path], *, everything: bool = False) -> dict[str, object]:
    """`everything`: count samples outside our tasks too (the cluster's own machinery), under the
    outermost django-q function they are in."""
    tasks: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    spent: Counter[str] = Counter()
    total = 0
    for raw in raw_files:
        for line in raw.read_text().splitlines():
            if not line.strip():
                continue
            frames, count, sleeping = parse(line)
            at = next((i for i, f in enumerate(frames) if f[1].startswith(TASK_MODULES)), None)
            if at is None:
                if not everything or not frames:
                    continue  # the cluster's own loops, workers waiting for a task
                outer = next((f for f in frames if "django_q/" in f[1]), frames[0])
                total += count
                tasks[f"outside tasks: {outer[0]} ({outer[1].rpartition('site-packages/')[2]})"] += count
                # Without the script's own `<module>` (manage.py), at the root of every stack,
                # which would count the cluster's loops as importing.
                inner = frames[1:] if frames[0][0] == "<module>" else frames
                spent[spent_on(inner or frames, sleeping)] += count
                continue
            task = frames[at]
            total += count
            tasks["(importing the tasks module)" if task[0] == "<module>" else task[0]] += count
            for name in {f"{fn} ({path})" for fn, path in frames if path.startswith(OURS)}:
                functions[name] += count
            spent[spent_on(frames[at:], sleeping)] += count

    def top(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, 100 * c / total) for name, c in counter.most_common(n)] if total else []

    return {
        "task_samples": total,
        "tasks": top(tasks, 10),
        "our_functions_inclusive": top(functions, 20),
        "spent_on": top(spent, 15),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=1)
    parser.add_argument("--rate", type=int, default=100, help="samples per second per process")
    parser.add_argument("--batch-size", type=int, help="WORKER_BATCH_SIZE (default: the setting's default)")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="CPU time only (no idle samples), the cluster's machinery outside tasks included",
    )
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    raw_files: list[Path] = []
    spies: list[subprocess.Popen[bytes]] = []

    def watch(pids: list[int]) -> Callable[[], None]:
        for pid in pids:
            raw = RESULTS / f"profile-{stamp}-{pid}.txt"
            raw_files.append(raw)
            command = [str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--nonblocking"]
            command += [] if args.cpu else ["--idle"]
            command += ["--full-filenames", "--format", "raw", "--rate", str(args.rate), "--output", str(raw)]
            spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def stop() -> None:
            for spy in spies:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            for spy in spies:
                spy.wait(timeout=60)

        return stop

    run = throughput(args.tokens, args.clusters, batch_size=args.batch_size, watch=watch)
    summary = summarise([f for f in raw_files if f.exists()], everything=args.cpu)
    what = "CPU only, outside tasks included" if args.cpu else "idle included"
    print(
        f"profile: {args.tokens} tokens, {args.clusters} cluster(s), {run['tokens_per_s']:.1f} tokens/s under "
        f"py-spy ({args.rate} Hz, {what}); {summary['task_samples']} samples"
    )
    for title, key in (
        ("tasks", "tasks"),
        ("our functions, inclusive", "our_functions_inclusive"),
        ("what the time is spent on (innermost frame)", "spent_on"),
    ):
        print(f"\n{title} (% of {'CPU' if args.cpu else 'task'} time):")
        for name, share in summary[key]:  # type: ignore[attr-defined]
            print(f"  {share:5.1f}%  {name}")
    path = write_results(
        "profile", {"args": vars(args), "run": run, "summary": summary, "raw": [str(f) for f in raw_files]}
    )
    print(f"\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
