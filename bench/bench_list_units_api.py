"""Measure ``fleetctl list-units`` over fleetd's API at 10,000 units.

Starts a private etcd on free loopback ports, fills it with N units placed
and reported on M machines (one unit state per unit), serves the API on a
unix socket in this process, as fleetd does, and times the installed
fleetctl as a subprocess: its start-up (``--version``), list-units and
list-unit-files over the API, and list-units over the etcd driver for
comparison. Then it times ``fleetctl start --no-block`` of S new unit files
over each driver: with no agents, that is fleetctl's own writing time.
Each figure is the median of ``--runs`` runs, after one warm-up run.

Run it as ``python -m bench.bench_list_units_api [--units N] [--machines M]
[--runs R] [--token-limit L] [--start-units S]``; it needs the etcd binary.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.cluster import time_fleetctl
from fleetd.api.backend import ApiBackend
from fleetd.api.server import ApiServer
from fleetd.etcdserver import EtcdServer
from fleetd.model import DesiredState, Machine, UnitState
from fleetd.registry import view as keys
from fleetd.registry.etcd import EtcdRegistry, open_registry
from fleetd.registry.mirror import RegistryMirror

PREFIX = "/bench/"
FLEETCTL = str(Path(sys.executable).parent / "fleetctl")
# etcd rejects transactions of more than 128 operations by default.
BATCH = 120


def machine_id(number: int) -> str:
    return hashlib.md5(f"machine-{number}".encode()).hexdigest()


async def fill(registry: EtcdRegistry, units: int, machines: int) -> None:
    """Write the keys of ``units`` launched units spread over ``machines``."""
    operations = []
    for number in range(machines):
        machine = Machine(machine_id(number), f"10.0.{number // 250}.{number % 250}")
        operations.append(
            registry.op_put(keys.machine_key(machine.id), keys.encode_machine(machine))
        )
    for number in range(units):
        name = f"web-{number:05d}.service"
        raw = (
            f"[Unit]\nDescription=web {number}\n\n[Service]\nExecStart=/bin/sleep 1d\n"
        )
        unit_hash = hashlib.sha1(raw.encode()).hexdigest()
        placed = machine_id(number % machines)
        state = UnitState(
            name, placed, unit_hash, "loaded", "active", "running", "launched"
        )
        operations += [
            registry.op_put(
                keys.unit_file_key(name), keys.encode_unit_file(name, unit_hash, raw)
            ),
            registry.op_put(keys.desired_key(name), DesiredState.LAUNCHED.value),
            registry.op_put(keys.placement_key(name), placed),
            registry.op_put(keys.state_key(name, placed), keys.encode_state(state)),
        ]
    for start in range(0, len(operations), BATCH):
        await registry.txn([], operations[start : start + BATCH], "fill")


async def median_fleetctl(
    args: list[str], environment: dict[str, str], runs: int
) -> float:
    """Return the median wall time in seconds of ``fleetctl args`` over ``runs``."""
    times, output = await time_fleetctl(args, environment, runs)
    print(
        f"  fleetctl {' '.join(args)}: {output.count(chr(10))} lines", file=sys.stderr
    )
    return statistics.median(times)


def write_unit_files(directory: Path, names: list[str]) -> list[Path]:
    """Write a ``sleep infinity`` service per name into ``directory``."""
    directory.mkdir(parents=True)
    paths = []
    for name in names:
        path = directory / name
        path.write_text(
            f"[Unit]\nDescription={name}\n\n[Service]\nExecStart=/bin/sleep infinity\n"
        )
        paths.append(path)
    return paths


async def time_start(
    directory: Path, label: str, count: int, environment: dict[str, str], runs: int
) -> float:
    """Return the median wall time of ``fleetctl start --no-block`` of new units.

    Every run starts ``count`` units that are not in the registry yet.
    """
    times = []
    for run in range(runs + 1):
        names = [f"start-{label}-{run}-{index}.service" for index in range(count)]
        paths = write_unit_files(directory / f"{label}-{run}", names)
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            FLEETCTL,
            "start",
            "--no-block",
            *map(str, paths),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
        )
        _, stderr = await process.communicate()
        elapsed = time.perf_counter() - started
        if process.returncode != 0:
            raise SystemExit(f"fleetctl start failed: {stderr.decode()}")
        if run > 0:
            times.append(elapsed)
    return statistics.median(times)


async def measure(
    arguments: argparse.Namespace, etcd: EtcdServer, socket_path: str
) -> None:
    async with open_registry([etcd.client_url], PREFIX, 30.0) as registry:
        started = time.perf_counter()
        await fill(registry, arguments.units, arguments.machines)
        print(f"filled etcd in {time.perf_counter() - started:.1f}s", file=sys.stderr)

        mirror = RegistryMirror(registry)
        mirror_task = asyncio.create_task(mirror.run())
        await mirror.synced.wait()
        backend = ApiBackend(
            registry, mirror, lambda: True, machine_id(0), arguments.token_limit
        )
        server = ApiServer(backend, unix_socket=socket_path, environ={})
        await server.start()
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLEETCTL_")}
        api = {**base, "FLEETCTL_ENDPOINT": f"unix://{socket_path}"}
        direct = {
            **base,
            "FLEETCTL_DRIVER": "etcd",
            "FLEETCTL_ENDPOINT": etcd.client_url,
            "FLEETCTL_ETCD_KEY_PREFIX": PREFIX,
        }
        try:
            runs = arguments.runs
            results = {
                "fleetctl --version": await median_fleetctl(["--version"], api, runs),
                "list-units over the API": await median_fleetctl(
                    ["list-units"], api, runs
                ),
                "list-unit-files over the API": await median_fleetctl(
                    ["list-unit-files"], api, runs
                ),
                "list-units over etcd": await median_fleetctl(
                    ["list-units"], direct, runs
                ),
            }
            count = arguments.start_units
            files = Path(socket_path).parent / "units"
            results[f"start --no-block {count} over the API"] = await time_start(
                files, "api", count, api, runs
            )
            results[f"start --no-block {count} over etcd"] = await time_start(
                files, "etcd", count, direct, runs
            )
        finally:
            await server.close()
            mirror_task.cancel()
            await asyncio.gather(mirror_task, return_exceptions=True)

    print(
        f"{arguments.units} units on {arguments.machines} machines, "
        f"token_limit {arguments.token_limit}, median of {arguments.runs} runs:"
    )
    for name, seconds in results.items():
        print(f"  {name:36} {seconds * 1000:7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--token-limit", type=int, default=100)
    parser.add_argument("--start-units", type=int, default=300)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as directory:
        etcd = EtcdServer(Path(directory) / "etcd")
        etcd.start()
        try:
            socket_path = str(Path(directory) / "fleet.sock")
            asyncio.run(measure(arguments, etcd, socket_path))
        finally:
            etcd.stop()


if __name__ == "__main__":
    main()
