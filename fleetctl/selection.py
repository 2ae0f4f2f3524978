"""Turning command arguments into unit names: mangling and glob patterns."""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterable, Sequence

import click

from fleetd.errors import UnitNameError
from fleetd.model import Unit
from fleetd.unit import mangle_unit_name

GLOB_CHARACTERS = frozenset("*?[")


def is_glob(arg: str) -> bool:
    """Tell whether an argument is a shell-style pattern (contains * ? or [)."""
    return any(character in GLOB_CHARACTERS for character in arg)


def match_glob(pattern: str, names: Iterable[str]) -> list[str]:
    """Return the names that the shell-style ``pattern`` matches, in given order.

    Matching is case-sensitive, as unit names are. Only the basename of the
    pattern counts, as for plain arguments, and no ``.service`` is appended:
    ``'nginx*'`` matches ``nginx.service`` and ``nginx-proxy.socket``.
    """
    base = posixpath.basename(pattern)
    return [name for name in names if fnmatch.fnmatchcase(name, base)]


def unit_name_of(arg: str) -> str:
    """Return the unit name an argument means (``web`` is ``web.service``).

    Raises ``click.ClickException`` for an argument that names no file or
    unit, such as "/" or "..".
    """
    try:
        return mangle_unit_name(arg)
    except UnitNameError as err:
        raise click.ClickException(str(err)) from err


def require_units(args: Sequence[str]) -> None:
    """Raise a usage error (exit 2) when a command is given no unit arguments."""
    if not args:
        raise click.UsageError("no units given; name at least one unit")


def select_units(
    args: Sequence[str], units: Sequence[Unit], *, missing_ok: bool = False
) -> list[Unit]:
    """Return the registry units that ``args`` name, each once, in argument order.

    A plain argument is mangled (``web`` means ``web.service``); a glob is
    matched against every unit name. Raises ``click.ClickException`` (exit 1)
    naming every argument that matches no unit, before anything is changed.
    With ``missing_ok``, such arguments only get a warning on stderr, as the
    original's destroy, stop and unload skipped them, so scripts that remove
    units stay idempotent.
    """
    by_name = {unit.name: unit for unit in units}
    selected: dict[str, Unit] = {}
    missing: list[str] = []
    for arg in args:
        if is_glob(arg):
            matched = match_glob(arg, by_name)
            if not matched:
                missing.append(f"{arg!r} (no unit matches)")
            for name in matched:
                selected.setdefault(name, by_name[name])
            continue
        name = unit_name_of(arg)
        unit = by_name.get(name)
        if unit is None:
            missing.append(name)
        else:
            selected.setdefault(name, unit)
    if missing and missing_ok:
        for name in missing:
            click.echo(f"WARNING: unit {name} not found in the registry", err=True)
    elif missing:
        noun = "unit" if len(missing) == 1 else "units"
        raise click.ClickException(
            f"{noun} {', '.join(missing)} not found in the registry; "
            "list the units with `fleetctl list-unit-files`"
        )
    return list(selected.values())


def select_one_unit(arg: str, units: Sequence[Unit]) -> Unit:
    """Return the one unit an argument names; a glob must match exactly one."""
    selected = select_units([arg], units)
    if len(selected) > 1:
        names = ", ".join(unit.name for unit in selected)
        raise click.ClickException(
            f"{arg!r} matches {len(selected)} units ({names}); name exactly one"
        )
    return selected[0]
