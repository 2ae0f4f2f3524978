"""Run the benchmarks and write docs/benchmarks.md.

    python -m bench                      # every scenario, a 10-minute soak
    python -m bench --only latency,list  # some scenarios; prints, writes nothing
    python -m bench --soak-minutes 2
    python -m bench --only memory --soak-minutes 60 --save memory.json
    python -m bench --only start,latency --include memory.json --output FILE

Needs root, etcd and systemd, like fleet-cluster. Every scenario starts its
own etcd on a free loopback port and boots its own hosts, named bench<hex>-<n>.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench import hosts, machine, scale
from bench.report import Section, load_sections, render, save_sections

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
# Everything from this line on in the output file is written by hand, and a
# new run keeps it.
NOTES_MARKER = "<!-- notes: written by hand, kept by python -m bench -->"

PREAMBLE = """
Figures measured by `python -m bench` on the machine below, against the
targets set for fleet-py and, where one exists, the original fleet's (Go,
v1.0) figure on a similar machine. Every scenario runs its own etcd 3.4 on
loopback and, where its section names them, test hosts: real systemd as PID 1 in Linux
namespaces, each running fleetd, booted by the code behind `fleet-cluster`.
The notes below say what else ran on the machine; single figures can be
noisy.
"""


def scenarios(
    soak_minutes: float,
) -> dict[str, Callable[[], Coroutine[Any, Any, Section]]]:
    return {
        "start": hosts.start_many,
        "latency": hosts.submit_latency,
        "failover": lambda: hosts.failover(10),
        "failover3": lambda: hosts.failover(3),
        "list": scale.list_units,
        "placement": scale.placement,
        "scale": scale.scale,
        "memory": lambda: hosts.memory(soak_minutes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios to run: "
        + ", ".join(scenarios(0))
        + " (default: all)",
    )
    parser.add_argument(
        "--soak-minutes",
        type=float,
        default=10.0,
        help="minutes the memory scenario samples fleetd at 1,000 units",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"Markdown file to write (default: {OUTPUT} when all scenarios run)",
    )
    parser.add_argument(
        "--save",
        type=Path,
        default=None,
        help="JSON file to write this run's sections to, for --include",
    )
    parser.add_argument(
        "--include",
        type=Path,
        default=None,
        help="JSON file written by --save: its sections join this run's page "
        "(a scenario run now replaces its saved section)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    available = scenarios(args.soak_minutes)
    chosen = [name for name in args.only.split(",") if name] or list(available)
    unknown = [name for name in chosen if name not in available]
    if unknown:
        parser.error(
            f"unknown scenario {unknown[0]!r}: choose from {', '.join(available)}"
        )
    output = args.output or (None if args.only else OUTPUT)
    included: list[tuple[str, Section, str]] = []
    if args.include is not None:
        try:
            included = load_sections(args.include)
        except (OSError, ValueError, TypeError, KeyError) as err:
            parser.error(
                f"cannot read sections from {args.include}: {err}; give a file "
                "that --save wrote"
            )
    command = "sudo .venv/bin/python -m bench " + shlex.join(sys.argv[1:])

    sections: list[Section] = []
    for name in chosen:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        section: Section
        try:
            section = asyncio.run(available[name]())
        except Exception as err:
            traceback.print_exc()
            section = Section(name, "", error=f"{type(err).__name__}: {err}")
        for figure in section.figures:
            print(f"   {figure.name}: {figure.value}  {figure.target}  {figure.note}")
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
        sections.append(section)

    if args.save is not None:
        save_sections(
            args.save,
            [
                (name, section, command)
                for name, section in zip(chosen, sections, strict=True)
            ],
        )
        print(f"wrote {args.save}")
    # Saved runs come first under How to run: they were run first.
    commands: list[str] = []
    by_scenario = dict(zip(chosen, sections, strict=True))
    for name, section, earlier in included:
        if name not in by_scenario:
            by_scenario[name] = section
            commands.append(earlier)
    commands.append(command)
    sections = [by_scenario[name] for name in available if name in by_scenario]
    if output is not None:
        how_to_run = "\n    ".join(dict.fromkeys(item.strip() for item in commands))
        page = render(how_to_run, machine.describe(), sections, PREAMBLE)
        output.write_text(page + kept_notes(output))
        print(f"wrote {output}")


def kept_notes(output: Path) -> str:
    """Return the hand-written part of an earlier page: NOTES_MARKER and after."""
    try:
        earlier = output.read_text()
    except FileNotFoundError:
        return ""
    start = earlier.find(NOTES_MARKER)
    return "\n" + earlier[start:] if start >= 0 else ""


if __name__ == "__main__":
    main()
