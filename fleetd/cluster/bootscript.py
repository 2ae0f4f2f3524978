"""The shell script that turns fresh namespaces into a test host.

A booted systemd acts on machine-wide state unless it is fenced in: Debian's
tmpfiles rules empty /tmp at boot, udev and sysctl units reconfigure the
machine, and `multi-user.target` would start every installed service. The
script therefore gives the host private mounts, masks those units in its
private /run, and boots a minimal target of its own.
"""

from __future__ import annotations

import shlex

HOST_TARGET = "fleet-host.target"
SYSTEMD = "/usr/lib/systemd/systemd"

# Units that would change machine-wide state from inside a host. They are
# linked to /dev/null in the host's private /run/systemd/system. Socket units
# pull in sysinit.target even from a minimal target, which is why masking them
# is needed at all.
MASKED_UNITS = (
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-clean.timer",
    "timers.target",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "systemd-binfmt.service",
    "systemd-hwdb-update.service",
    "ldconfig.service",
    "systemd-update-done.service",
    "systemd-sysusers.service",
    "systemd-journal-flush.service",
    "systemd-random-seed.service",
    "systemd-remount-fs.service",
    "systemd-firstboot.service",
    "systemd-machine-id-commit.service",
)

PRIVATE_TMPFS = (
    ("/run", "0755"),
    ("/tmp", "1777"),
    ("/var/tmp", "1777"),
    ("/var/log/journal", "2755"),
)

_TARGET_TEXT = """\
[Unit]
Description=fleet test host
Wants=systemd-journald.socket systemd-journald.service dbus.socket
After=systemd-journald.socket dbus.socket
AllowIsolate=yes
"""

_JOURNALD_DROP_IN = "[Journal]\nStorage=volatile\n"

# The script runs twice. As "outer" it joins the host's cgroups and calls
# unshare, which forks the "inner" run as PID 1 of the new PID namespace. Every
# step is checked (set -e): if a private mount fails, systemd must not start,
# because it would then clean the machine's own /tmp.
_TEMPLATE = """\
#!/bin/sh
set -eu
stage="$1"
name="$2"
state_dir="$3"
cgroup_mode="$4"

if [ "$stage" = outer ]; then
    shift 4
    for cgroup in "$@"; do
        echo $$ > "$cgroup/cgroup.procs"
    done
    set -- unshare --pid --fork --mount --uts --cgroup --mount-proc \\
        "$0" inner "$name" "$state_dir" "$cgroup_mode"
    if [ -n "${{FLEET_HOST_NETNS:-}}" ]; then
        set -- nsenter "--net=/run/netns/$FLEET_HOST_NETNS" "$@"
    fi
    exec "$@"
fi

mount --make-rprivate /

# Directories fleet runs from (FLEET_HOST_KEEP, colon-separated) that lie
# under a private mount are bound to a staging point first and bound back
# after the tmpfs mounts, so the host can still read them.
keep_index=0
old_ifs=$IFS
IFS=:
for kept in ${{FLEET_HOST_KEEP:-}}; do
    mkdir -p "$state_dir/kept/$keep_index"
    mount --bind "$kept" "$state_dir/kept/$keep_index"
    keep_index=$((keep_index + 1))
done
IFS=$old_ifs

{tmpfs_mounts}

keep_index=0
IFS=:
for kept in ${{FLEET_HOST_KEEP:-}}; do
    mkdir -p "$kept"
    mount --bind "$state_dir/kept/$keep_index" "$kept"
    keep_index=$((keep_index + 1))
done
IFS=$old_ifs

mount -t tmpfs -o mode=0755,nosuid,nodev,noexec tmpfs /sys/fs/cgroup
case "$cgroup_mode" in
unified)
    umount /sys/fs/cgroup
    mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
    ;;
hybrid)
    mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
    mount -t cgroup -o none,name=systemd,xattr cgroup /sys/fs/cgroup/systemd
    mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup/unified
    ;;
*)
    mkdir /sys/fs/cgroup/systemd
    mount -t cgroup -o none,name=systemd,xattr cgroup /sys/fs/cgroup/systemd
    ;;
esac

mkdir -p /run/systemd/system /run/systemd/journald.conf.d
printf %s {journald_drop_in} > /run/systemd/journald.conf.d/volatile.conf
for unit in {masked_units}; do
    ln -s /dev/null "/run/systemd/system/$unit"
done
printf %s {target_text} > /run/systemd/system/{target}

mount --bind "$state_dir/machine-id" /etc/machine-id
mount --bind "$state_dir/hostname" /etc/hostname
echo "$name" > /proc/sys/kernel/hostname

exec env -i container="$name" \\
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    {systemd} --unit={target}
"""


def render() -> str:
    """Return the boot script text; it takes its parameters as arguments."""
    tmpfs_lines = []
    for path, mode in PRIVATE_TMPFS:
        quoted = shlex.quote(path)
        tmpfs_lines.append(f"mkdir -p {quoted}")
        tmpfs_lines.append(f"mount -t tmpfs -o mode={mode},nosuid,nodev tmpfs {quoted}")

    return _TEMPLATE.format(
        tmpfs_mounts="\n".join(tmpfs_lines),
        journald_drop_in=shlex.quote(_JOURNALD_DROP_IN),
        masked_units=" ".join(shlex.quote(unit) for unit in MASKED_UNITS),
        target_text=shlex.quote(_TARGET_TEXT),
        target=HOST_TARGET,
        systemd=SYSTEMD,
    )
