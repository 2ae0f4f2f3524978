"""Test hosts: the real systemd as PID 1 in fresh Linux namespaces.

Each host has its own PID, mount, UTS and cgroup namespaces, a private tmpfs
on /run, /tmp, /var/tmp and /var/log/journal, its own machine ID and hostname,
a real journald and a socket-activated system D-Bus. Hosts share the machine's
file system outside those mounts and, unless given a network namespace, the
machine's network, where each host takes a loopback address as its public IP.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetd.cluster import bootscript, cgroups, process
from fleetd.errors import ClusterError

log = logging.getLogger(__name__)

_HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")

# PATH inside a host: the virtualenv that runs this code first, so `fleetd`
# and `fleetctl` resolve there, then the usual system directories.
HOST_PATH = os.pathsep.join(
    [
        str(Path(sys.executable).parent),
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ]
)

_EXIT_WAIT = 10.0  # seconds to wait for a killed host's processes to exit


@dataclass
class Host:
    """One booted test host, identified from outside by its PID 1.

    `start_time` is the start time of that PID in clock ticks since boot. It
    keeps kill() from signalling an unrelated process that reused the PID.
    """

    name: str
    machine_id: str
    public_ip: str
    pid: int
    state_dir: Path
    start_time: int
    cgroup_dirs: tuple[Path, ...] = ()
    netns: str | None = None
    _launcher: subprocess.Popen[bytes] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def boot(
        cls,
        name: str,
        state_dir: Path,
        public_ip: str,
        machine_id: str | None = None,
        timeout: float = 30.0,
        netns: str | None = None,
    ) -> Host:
        """Boot a host and return once its systemd reports running.

        A host that ends up "degraded" is returned too, after its failed units
        are logged. Raises ClusterError when the boot fails or takes longer
        than `timeout` seconds; the host is then killed and cleaned up.
        `netns` names a network namespace under /run/netns to boot the host in;
        None keeps the machine's network. NOTE: no test boots a host with a
        `netns` yet.
        """
        _check_name(name)
        if machine_id is None:
            machine_id = uuid.uuid4().hex
        elif not _MACHINE_ID.match(machine_id):
            raise ClusterError(
                f"invalid machine ID {machine_id!r}: use 32 lowercase hex digits"
            )

        state_dir = Path(state_dir).resolve()
        _check_state_dir(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "machine-id").write_text(machine_id + "\n", encoding="ascii")
        (state_dir / "hostname").write_text(name + "\n", encoding="ascii")
        script = state_dir / "boot.sh"
        script.write_text(bootscript.render(), encoding="utf-8")
        script.chmod(0o755)

        layout = cgroups.CgroupLayout.detect()
        cgroup_dirs = cgroups.host_cgroup_dirs(name)
        cgroups.create(cgroup_dirs)

        deadline = time.monotonic() + timeout
        launcher = _launch(script, name, state_dir, layout, cgroup_dirs, netns)
        host: Host | None = None
        try:
            pid = _wait_for_init(launcher, deadline)
            host = cls(
                name=name,
                machine_id=machine_id,
                public_ip=public_ip,
                pid=pid,
                state_dir=state_dir,
                start_time=process.start_time(pid) or 0,
                cgroup_dirs=tuple(cgroup_dirs),
                netns=netns,
                _launcher=launcher,
            )
            host._wait_running(deadline)
        except BaseException as err:
            if host is not None:
                host.kill()
            else:
                _stop_launcher(launcher)
                cgroups.remove(cgroup_dirs)
            if isinstance(err, ClusterError):
                raise ClusterError(f"{err}\n{_console_tail(state_dir)}") from err
            raise

        log.info("host %s booted, PID %d", name, host.pid)
        return host

    def run(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside the host and capture its output as text.

        The command runs in the host's namespaces and an environment of HOST_PATH,
        LANG and HOME plus `env`. With `check`, a non-zero exit raises
        subprocess.CalledProcessError, as subprocess.run does.
        """
        return subprocess.run(
            self._nsenter(argv),
            check=check,
            input=input,
            timeout=timeout,
            env=self._environment(env),
            capture_output=True,
            text=True,
        )

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[str]:
        """Start `argv` inside the host, for output that streams (journalctl -f).

        Keyword arguments go to subprocess.Popen; text mode is the default and
        `env` is merged into the host environment as in run().
        """
        kwargs.setdefault("text", True)
        kwargs["env"] = self._environment(kwargs.get("env"))
        child: subprocess.Popen[str] = subprocess.Popen(self._nsenter(argv), **kwargs)
        return child

    def alive(self) -> bool:
        """Return True while the host's PID 1 runs (and is not a zombie)."""
        return process.start_time(self.pid) == self.start_time

    def kill(self) -> None:
        """Send SIGKILL to the host's PID 1 and wait until the host is gone.

        Every process of the host dies with its PID 1, because the host is a
        PID namespace. Killing a host that is already dead only cleans up.
        """
        if self.alive():
            log.info("killing host %s, PID %d", self.name, self.pid)
            os.kill(self.pid, signal.SIGKILL)
        self._wait_gone(_EXIT_WAIT)

    def poweroff(self, timeout: float = 20.0) -> None:
        """Power the host off in order (SIGRTMIN+4); kill it after `timeout` s."""
        if self.alive():
            log.info("powering off host %s", self.name)
            os.kill(self.pid, signal.SIGRTMIN + 4)
            try:
                self._wait_gone(timeout)
                return
            except ClusterError:
                log.warning("poweroff of host %s timed out; killing it", self.name)
        self.kill()

    def _wait_gone(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        if self._launcher is not None:
            # unshare exits once its child, the host's PID 1, is gone.
            try:
                self._launcher.wait(timeout=timeout)
            except subprocess.TimeoutExpired as err:
                raise ClusterError(
                    f"host {self.name} (PID {self.pid}) still running after {timeout} s"
                ) from err
        while self.alive():
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"host {self.name} (PID {self.pid}) still running after {timeout} s"
                )
            time.sleep(0.05)
        cgroups.remove(
            list(self.cgroup_dirs), timeout=max(1.0, deadline - time.monotonic())
        )

    def _wait_running(self, deadline: float) -> None:
        """Wait until `systemctl is-system-running` reports a finished boot."""
        state = "unknown"
        while time.monotonic() < deadline:
            if not self.alive():
                raise ClusterError(f"host {self.name} exited during boot")
            try:
                result = self.run(
                    ["systemctl", "is-system-running", "--wait"],
                    check=False,
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired:
                break
            state = result.stdout.strip()
            if state == "running":
                return
            if state == "degraded":
                failed = self.run(
                    ["systemctl", "--failed", "--no-legend", "--plain"], check=False
                )
                log.warning(
                    "host booted degraded; failed units: %s",
                    failed.stdout.strip(),
                    extra={"host": self.name},
                )
                return
            # systemd is not accepting requests yet ("offline" or no output).
            time.sleep(0.05)
        raise ClusterError(
            f"host {self.name} timed out booting (last state {state!r}); "
            "raise the boot timeout or read the console log below"
        )

    def _nsenter(self, argv: Sequence[str]) -> list[str]:
        if not argv:
            raise ValueError("argv must name a program to run in the host")
        return ["nsenter", "-t", str(self.pid), "-a", "--", *argv]

    def _environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        environment = {"PATH": HOST_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
        if extra:
            environment.update(extra)
        return environment


@dataclass(frozen=True)
class HostSpec:
    """The parameters of one host for boot_hosts."""

    name: str
    state_dir: Path
    public_ip: str
    machine_id: str | None = None


def boot_hosts(specs: Sequence[HostSpec], timeout: float = 30.0) -> list[Host]:
    """Boot several hosts in parallel and return them in the order given.

    If any host fails to boot, the ones that did boot are killed and the first
    error is raised.
    """
    if not specs:
        return []
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        futures = [
            pool.submit(
                Host.boot,
                spec.name,
                spec.state_dir,
                spec.public_ip,
                machine_id=spec.machine_id,
                timeout=timeout,
            )
            for spec in specs
        ]
        hosts: list[Host] = []
        errors: list[BaseException] = []
        for future in futures:
            try:
                hosts.append(future.result())
            except Exception as err:
                errors.append(err)
    if errors:
        for host in hosts:
            host.kill()
        raise errors[0]
    return hosts


def _check_name(name: str) -> None:
    if not _HOST_NAME.match(name):
        raise ClusterError(
            f"invalid host name {name!r}: use 1 to 63 lowercase letters, digits "
            "and inner hyphens"
        )


def _check_state_dir(state_dir: Path) -> None:
    """Reject a state directory that the host's private mounts would hide.

    The boot script bind-mounts files from it after mounting its tmpfs
    directories, so the files must be outside them.
    """
    for private, _mode in bootscript.PRIVATE_TMPFS:
        if state_dir.is_relative_to(private):
            raise ClusterError(
                f"invalid host state directory {state_dir}: it is under {private}, "
                "which each host mounts privately; use a directory such as "
                "/var/lib/fleet-cluster"
            )


def kept_paths() -> list[Path]:
    """Return the directories fleet runs from, which every host must see.

    A checkout or virtualenv under /tmp, /var/tmp or /run would otherwise be
    hidden by the host's private mounts there, and fleetd could not start.
    """
    package_root = Path(__file__).resolve().parents[2]
    candidates = {Path(sys.prefix).resolve(), package_root}
    return sorted(
        path
        for path in candidates
        if any(path.is_relative_to(private) for private, _ in bootscript.PRIVATE_TMPFS)
    )


def _launch(
    script: Path,
    name: str,
    state_dir: Path,
    layout: cgroups.CgroupLayout,
    cgroup_dirs: Sequence[Path],
    netns: str | None,
) -> subprocess.Popen[bytes]:
    environment = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "FLEET_HOST_KEEP": ":".join(str(path) for path in kept_paths()),
    }
    if netns is not None:
        environment["FLEET_HOST_NETNS"] = netns
    argv = [
        "/bin/sh",
        str(script),
        "outer",
        name,
        str(state_dir),
        layout.mode,
        *(str(path) for path in cgroup_dirs),
    ]
    with open(state_dir / "console.log", "wb") as console:
        # A new session keeps the host alive after the calling process exits
        # (the cluster command returns while its hosts keep running).
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
        )


def _wait_for_init(launcher: subprocess.Popen[bytes], deadline: float) -> int:
    """Return the PID of the host's PID 1 once it runs systemd.

    unshare forks that process, so it is the only child of the launcher.
    """
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise ClusterError(
                f"boot script exited with status {launcher.returncode} before "
                "systemd started"
            )
        try:
            pids = children.read_text(encoding="ascii").split()
        except FileNotFoundError:
            pids = []
        if pids:
            pid = int(pids[0])
            try:
                if os.readlink(f"/proc/{pid}/exe") == bootscript.SYSTEMD:
                    return pid
            except FileNotFoundError:
                pass
        time.sleep(0.02)
    raise ClusterError("systemd did not start in time inside the new namespaces")


def _stop_launcher(launcher: subprocess.Popen[bytes]) -> None:
    """Kill a boot that never reached systemd; the launcher is our own child."""
    if launcher.poll() is None:
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
        try:
            pids = [int(pid) for pid in children.read_text(encoding="ascii").split()]
        except FileNotFoundError:
            pids = []
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        launcher.kill()
    launcher.wait()


def _console_tail(state_dir: Path, lines: int = 20) -> str:
    try:
        text = (state_dir / "console.log").read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no console log)"
    tail = text.splitlines()[-lines:]
    return "console log of the boot:\n" + "\n".join(tail)
