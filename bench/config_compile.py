"""Benchmark of the config compiler (``python bench/config_compile.py``).

1. Every config of the shared corpus (``$CIRCLET_SHARED_DIR/config`` or ``<repo>/../shared/
   config``) is compiled with the shared orb registry, ``ROUNDS`` times; per-config times are the
   median over rounds.  Orbs included: "cold" clears the parsed-orb cache before each compile,
   "warm" keeps it (as a long-running server does).  Configs that fail (missing orbs) are timed
   too, up to the error.
2. A generated config of about 1 MB with 500 jobs and 50 workflows is compiled.
3. The baseline is ``yaml.load`` with the C loader (``yaml.CSafeLoader``) of the same files in the
   same run; the report gives compile time / load time.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from circlet.config import ConfigInvalid, compile_config, fabricated_values  # noqa: E402
from circlet.config import orbs as orb_module  # noqa: E402

ROUNDS = 5


def shared_dir() -> Path:
    base = os.environ.get("CIRCLET_SHARED_DIR")
    return (Path(base) if base else REPO.parent / "shared") / "config"


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def compile_once(source: str, orb_dir: Path) -> None:
    with contextlib.suppress(ConfigInvalid):
        compile_config(source, pipeline_values=fabricated_values(), orb_dirs=[orb_dir]).to_yaml()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def per_config_times(sources: list[str], action: Callable[[str], object]) -> list[float]:
    return [statistics.median(timed(lambda s=s: action(s)) for _ in range(ROUNDS)) for s in sources]


def cold_compile(source: str, orb_dir: Path) -> None:
    orb_module._orb_cache.clear()
    compile_once(source, orb_dir)


def generated_config(jobs: int = 500, workflows: int = 50) -> str:
    """A config of about 1 MB: parameterised jobs using commands and an executor, in workflows
    of ten jobs chained with ``requires``."""
    lines = [
        "version: 2.1",
        "parameters:",
        "  deploy: {type: boolean, default: true}",
        "executors:",
        "  node:",
        "    parameters: {tag: {type: string, default: '20.1'}}",
        "    docker: [{image: 'cimg/node:<< parameters.tag >>'}]",
        "commands:",
        "  install:",
        "    parameters: {dir: {type: string, default: .}}",
        "    steps:",
        "      - restore_cache: {keys: ['deps-{{ checksum \"<< parameters.dir >>/lock\" }}']}",
        "      - run: {name: Install, command: 'cd << parameters.dir >> && npm ci'}",
        "jobs:",
    ]
    body = "echo " + "x" * 1600
    for i in range(jobs):
        lines += [
            f"  job-{i}:",
            "    parameters: {level: {type: integer, default: 1}}",
            "    executor: {name: node, tag: '20.<< parameters.level >>'}",
            "    steps:",
            "      - checkout",
            f"      - install: {{dir: pkg-{i}}}",
            f"      - run: {{name: step {i}, command: '{body} << parameters.level >>'}}",
            "      - when:",
            "          condition: << pipeline.parameters.deploy >>",
            "          steps: [{run: deploy}]",
        ]
    lines.append("workflows:")
    per_workflow = jobs // workflows
    for w in range(workflows):
        lines += [f"  wf-{w}:", "    jobs:"]
        for k in range(per_workflow):
            job = w * per_workflow + k
            requires = f", requires: [job-{job - 1}]" if k else ""
            lines.append(f"      - job-{job}: {{level: {k}, context: [ctx-{w}]{requires}}}")
    return "\n".join(lines) + "\n"


def main() -> None:
    shared = shared_dir()
    corpus = sorted((shared / "corpus").glob("*.yml"))
    if not corpus:
        sys.exit(f"no corpus under {shared} (set CIRCLET_SHARED_DIR)")
    orb_dir = shared / "orbs"
    sources = [p.read_text() for p in corpus]

    load_times = per_config_times(sources, lambda s: yaml.load(s, Loader=yaml.CSafeLoader))
    cold = per_config_times(sources, lambda s: cold_compile(s, orb_dir))
    compile_once(sources[0], orb_dir)
    warm = per_config_times(sources, lambda s: compile_once(s, orb_dir))

    big = generated_config()
    big_load = statistics.median(timed(lambda: yaml.load(big, Loader=yaml.CSafeLoader)) for _ in range(3))
    big_compile = statistics.median(timed(lambda: compile_once(big, orb_dir)) for _ in range(3))

    def ms(value: float) -> str:
        return f"{value * 1000:7.2f} ms"

    print(f"corpus: {len(corpus)} configs, median of {ROUNDS} rounds each")
    print(f"{'':28}{'median':>10}{'p99':>11}{'total':>11}")
    for label, times in (
        ("yaml.load (CSafeLoader)", load_times),
        ("compile, orbs cold", cold),
        ("compile, orbs warm", warm),
    ):
        print(f"{label:28}{ms(statistics.median(times))} {ms(percentile(times, 0.99))} {ms(sum(times))}")
    print(
        f"ratio compile/load (median): cold {statistics.median(cold) / statistics.median(load_times):.1f}x,"
        f" warm {statistics.median(warm) / statistics.median(load_times):.1f}x"
    )
    print(
        f"ratio compile/load (total):  cold {sum(cold) / sum(load_times):.1f}x, warm {sum(warm) / sum(load_times):.1f}x"
    )
    print(
        f"generated config: {len(big) / 1e6:.2f} MB, 500 jobs, 50 workflows: compile "
        f"{ms(big_compile)}, yaml.load {ms(big_load)}, ratio {big_compile / big_load:.1f}x"
    )


if __name__ == "__main__":
    main()
