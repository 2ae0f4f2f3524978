"""Scenarios on test hosts that run fleetd and real systemd.

Each scenario boots its own cluster (etcd plus hosts named ``bench<hex>-<n>``)
and tears it down before it returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from bench.cluster import FLEETCTL, BenchCluster, Follower, active_count, registry_at
from bench.report import Figure, Section, median, milliseconds, percentile, seconds
from bench.units import serialized, sleep_unit, submit_bulk, write_unit_files
from fleetd.model import DesiredState
from fleetd.registry.view import RegistryView


def all_active(names: Sequence[str]) -> Callable[[RegistryView], bool]:
    def condition(view: RegistryView) -> bool:
        return active_count(view, names) == len(names)

    return condition


def gone(name: str) -> Callable[[RegistryView], bool]:
    def condition(view: RegistryView) -> bool:
        return name not in view.states

    return condition


async def start_many(count: int = 300) -> Section:
    """Start ``count`` units with ``fleetctl start --no-block``; time all active."""
    section = Section(
        f"{count} units on three test hosts, start to all active",
        f"Boots three test hosts, writes {count} `sleep infinity` services, runs "
        f"`fleetctl start --no-block` with all {count} files and watches etcd "
        "until every unit's machine has published systemd state `active`. The "
        "time runs from the start of the fleetctl process.",
    )
    with BenchCluster(hosts=3) as cluster:
        names = [f"many-{index}.service" for index in range(count)]
        paths = write_unit_files(cluster.state_dir / "units", names)
        async with (
            registry_at(cluster.etcd_url) as registry,
            Follower(registry) as follower,
        ):
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                FLEETCTL,
                "start",
                "--no-block",
                *map(str, paths),
                env=cluster.fleetctl_env(),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await process.communicate()
            if process.returncode != 0:
                raise RuntimeError(f"fleetctl start failed: {stderr.decode()}")
            returned = time.monotonic() - started
            placed = await follower.wait(
                lambda view: all(name in view.placements for name in names),
                120,
                f"placement of {count} units",
            )
            active = await follower.wait(
                all_active(names), 300, f"{count} units active"
            )
    total = active - started
    section.figures = [
        Figure(
            "start to all active",
            seconds(total),
            "2.7 s",
            total <= 2.7,
            "original fleet: 8.0 s",
        ),
        Figure("fleetctl start --no-block returned", seconds(returned)),
        Figure("start to all placed", seconds(placed - started)),
    ]
    return section


async def submit_latency(runs: int = 100, cli_runs: int = 10) -> Section:
    """Time one unit from its submission to systemd active, ``runs`` times."""
    section = Section(
        "One unit, submit to active",
        f"Three test hosts. {runs} times, one after the other: create a new "
        "unit with desired state `launched` in one etcd transaction (the write "
        "`fleetctl start` makes) and watch etcd until the machine it is placed "
        "on publishes systemd state `active`. Units stay, so the last run "
        f"shares its hosts with {runs - 1} others. Then {cli_runs} runs of the "
        "whole `fleetctl start UNIT` command, which also pays Python's start-up "
        "and waits for the state itself.",
    )
    latencies: list[float] = []
    cli_times: list[float] = []
    with BenchCluster(hosts=3) as cluster:
        async with (
            registry_at(cluster.etcd_url) as registry,
            Follower(registry) as follower,
        ):
            for index in range(runs):
                name = f"latency-{index}.service"
                raw = serialized(sleep_unit(name))
                started = time.monotonic()
                await registry.create_unit(name, raw, DesiredState.LAUNCHED)
                active = await follower.wait(all_active([name]), 60, f"{name} active")
                latencies.append(active - started)
        paths = write_unit_files(
            cluster.state_dir / "units",
            [f"cli-{index}.service" for index in range(cli_runs)],
        )
        for path in paths:
            started = time.monotonic()
            cluster.fleetctl(["start", str(path)])
            cli_times.append(time.monotonic() - started)
    p50 = median(latencies)
    p99 = percentile(latencies, 0.99)
    section.figures = [
        Figure(f"median of {runs}", milliseconds(p50), "100 ms", p50 <= 0.1),
        Figure(f"99th percentile of {runs}", milliseconds(p99), "500 ms", p99 <= 0.5),
        Figure(
            "fastest / slowest",
            f"{milliseconds(min(latencies))} / {milliseconds(max(latencies))}",
        ),
        Figure(
            f"`fleetctl start UNIT`, median of {cli_runs}",
            milliseconds(median(cli_times)),
            note="whole command, Python start-up included",
        ),
    ]
    return section


async def failover(agent_ttl: int, units: int = 30, runs: int = 2) -> Section:
    """Kill the host with the most units; time until they are active elsewhere."""
    section = Section(
        f"Host killed, agent TTL {agent_ttl} s",
        f"Three test hosts with `agent_ttl={agent_ttl}s` run {units} units. The "
        "host that runs the most of them gets SIGKILL on its PID 1 (a machine "
        "that loses power), and etcd is watched until every unit it ran is "
        f"active on another machine. {runs} runs, each on a fresh cluster.",
    )
    durations: list[float] = []
    notes: list[str] = []
    for _ in range(runs):
        with BenchCluster(hosts=3, agent_ttl=f"{agent_ttl}s") as cluster:
            names = [f"failover-{index}.service" for index in range(units)]
            async with (
                registry_at(cluster.etcd_url) as registry,
                Follower(registry) as follower,
            ):
                await submit_bulk(registry, [(n, sleep_unit(n)) for n in names])
                await follower.wait(all_active(names), 120, f"{units} units active")
                view = follower.view
                counts: dict[str, list[str]] = {}
                for name in names:
                    counts.setdefault(view.placements[name], []).append(name)
                victim_id = max(counts, key=lambda machine: len(counts[machine]))
                moved = counts[victim_id]
                leader = view.leader == victim_id

                def elsewhere(
                    view: RegistryView,
                    victim: str = victim_id,
                    moved: Sequence[str] = moved,
                ) -> bool:
                    for name in moved:
                        machine_id = view.placements.get(name, victim)
                        state = view.states.get(name, {}).get(machine_id)
                        if machine_id == victim or state is None:
                            return False
                        if state.active_state != "active":
                            return False
                    return True

                killed = time.monotonic()
                cluster.host_of(victim_id).kill()
                done = await follower.wait(
                    elsewhere, agent_ttl + 60, "units active elsewhere"
                )
                durations.append(done - killed)
                role = "engine leader" if leader else "not the leader"
                notes.append(f"{len(moved)} units, {role}: {seconds(done - killed)}")
    worst = max(durations)
    bound = agent_ttl + 2
    section.figures = [
        Figure(
            f"kill to active elsewhere, worst of {runs}",
            seconds(worst),
            f"{bound} s (TTL + 2 s)",
            worst <= bound,
            "; ".join(notes),
        )
    ]
    if agent_ttl == 30:
        section.figures[0].note += "; original fleet: 24.4 s"
    return section


# Units destroyed and created again between two samples of the soak.
SOAK_CHURN = 10
# Growth of the soak's last quarter over its first (medians) still called flat.
FLAT_KIB = 1024


async def memory(soak_minutes: float, sample_seconds: float = 30.0) -> Section:
    """Sample fleetd's RSS on one host with 100, then 1,000 local units."""
    section = Section(
        "fleetd memory",
        "One test host, so its fleetd is both agent and engine. fleetd's RSS "
        "(VmRSS in /proc) is read once 100 units are active, then once 1,000 "
        f"are, then every {sample_seconds:g} s for {soak_minutes:g} minutes. "
        f"Between two samples {SOAK_CHURN} units are destroyed and created "
        "again (each stopped, unloaded, then written, loaded and started by "
        "the agent) and `fleetctl list-units` and `list-machines` run inside "
        "the host over fleetd's API socket. Flat means the median of the last "
        "quarter of the samples is at most 1 MiB above the median of the first "
        "quarter.",
    )
    with BenchCluster(hosts=1) as cluster:
        host = cluster.hosts[0]
        async with (
            registry_at(cluster.etcd_url) as registry,
            Follower(registry) as follower,
        ):
            # Sampled once fleetd has registered, so its imports are done.
            await follower.wait(lambda view: bool(view.machines), 60, "registration")
            await asyncio.sleep(5)
            idle = cluster.fleetd_rss_kib(host)
            first = [f"mem-{index}.service" for index in range(100)]
            await submit_bulk(registry, [(n, sleep_unit(n)) for n in first])
            await follower.wait(all_active(first), 120, "100 units active")
            await asyncio.sleep(5)
            at_100 = cluster.fleetd_rss_kib(host)
            rest = [f"mem-{index}.service" for index in range(100, 1000)]
            await submit_bulk(registry, [(n, sleep_unit(n)) for n in rest])
            everything = first + rest
            await follower.wait(all_active(everything), 600, "1,000 units active")
            await asyncio.sleep(5)
            at_1000 = cluster.fleetd_rss_kib(host)
            samples = [at_1000]
            cpu_before = cluster.fleetd_cpu_seconds(host)
            soak_started = time.monotonic()
            deadline = soak_started + soak_minutes * 60
            churn = 0
            while time.monotonic() < deadline:
                await asyncio.sleep(sample_seconds)
                names = [
                    everything[(churn + offset) % len(everything)]
                    for offset in range(SOAK_CHURN)
                ]
                churn += SOAK_CHURN
                for name in names:
                    await registry.destroy_unit(name)
                for name in names:
                    await follower.wait(gone(name), 60, f"{name} gone")
                for name in names:
                    await registry.create_unit(
                        name, serialized(sleep_unit(name)), DesiredState.LAUNCHED
                    )
                await follower.wait(all_active(names), 60, "churned units active")
                for command in ("list-units", "list-machines"):
                    host.run([FLEETCTL, command, "--no-legend"], timeout=60)
                samples.append(cluster.fleetd_rss_kib(host))
            cpu = cluster.fleetd_cpu_seconds(host) - cpu_before
            cpu_share = cpu / max(time.monotonic() - soak_started, 1e-9)
    mib = 1024
    quarter = max(1, len(samples) // 4)
    growth = median(samples[-quarter:]) - median(samples[:quarter])
    hour = soak_minutes >= 60
    section.figures = [
        Figure("RSS with no unit", f"{idle / mib:.1f} MiB"),
        Figure(
            "RSS with 100 local units",
            f"{at_100 / mib:.1f} MiB",
            "40 MB",
            at_100 * 1024 <= 40_000_000,
        ),
        Figure(
            "RSS with 1,000 local units",
            f"{at_1000 / mib:.1f} MiB",
            "64 MB",
            at_1000 * 1024 <= 64_000_000,
        ),
        Figure(
            f"RSS over a {soak_minutes:g}-minute soak at 1,000 units",
            f"{min(samples) / mib:.1f} to {max(samples) / mib:.1f} MiB, "
            f"last {samples[-1] / mib:.1f} MiB",
            "flat over 1 hour",
            growth <= FLAT_KIB and hour,
            f"{len(samples)} samples, {churn:,} units churned; last quarter's "
            f"median {growth / mib:+.2f} MiB from the first's"
            + ("" if hour else "; shorter than the hour the target asks for"),
        ),
        Figure(
            "fleetd CPU over the soak, churn and API calls included",
            f"{cpu_share:.1%} of one CPU",
            note=f"{cpu:.1f} s of CPU time",
        ),
    ]
    return section
