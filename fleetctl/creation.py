"""Creating units from local files before submit, load and start act on them.

``plan_units`` reads, parses and validates every argument and writes nothing,
so a bad argument leaves the registry untouched. Only then does
``fleetctl.bulk`` write the new and replaced units.
"""

from __future__ import annotations

import posixpath
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from fleetctl.selection import is_glob, match_glob, unit_name_of
from fleetd.errors import UnitFileError, UnitNameError
from fleetd.model import DesiredState, Unit
from fleetd.rules import requirements_of, validate_options
from fleetd.unit import UnitFile, UnitNameInfo, validate_unit_name


@dataclass(frozen=True)
class NewUnit:
    """A unit file to store: created, or replacing the registry's copy."""

    name: str
    raw: str
    source: str
    replace: bool
    # [X-Fleet] Global=true, known from the parse that validated the file.
    is_global: bool = False


@dataclass
class Plan:
    """The writes of a submit, load or start, and the unit names it acts on."""

    names: list[str] = field(default_factory=list)
    writes: list[NewUnit] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LocalFile:
    """A unit file read from disk."""

    path: str
    unit_file: UnitFile


def plan_units(
    args: Sequence[str],
    registry_units: Mapping[str, Unit],
    *,
    replace: bool,
    replaceable: Collection[DesiredState],
    allow_templates: bool,
) -> Plan:
    """Decide, without writing, which units ``args`` name and which to store.

    ``replaceable`` is the set of desired states in which --replace may
    overwrite a unit. Raises ``click.ClickException`` naming the first
    argument that cannot be used: an invalid name, a missing or invalid unit
    file, a glob matching nothing, or a template given to load or start.
    """
    plan = Plan()
    for arg in args:
        if is_glob(arg):
            matched = match_glob(arg, registry_units)
            if not matched:
                raise click.ClickException(
                    f"no unit in the registry matches {arg!r}; list the units with "
                    "`fleetctl list-unit-files`"
                )
            _add_names(plan, matched, allow_templates)
            continue

        name = unit_name_of(arg)
        if name in plan.names:
            continue
        try:
            validate_unit_name(name)
        except UnitNameError as err:
            origin = "" if arg == name else f" (from the argument {arg!r})"
            raise click.ClickException(f"{err}{origin}") from err
        _add_names(plan, [name], allow_templates)

        existing = registry_units.get(name)
        if existing is not None:
            _plan_existing(plan, arg, existing, replace, replaceable)
        else:
            _plan_new(plan, arg, name, registry_units)
    return plan


def _add_names(plan: Plan, names: Sequence[str], allow_templates: bool) -> None:
    for name in names:
        info = UnitNameInfo.from_name(name)
        if not allow_templates and info is not None and info.is_template:
            raise click.ClickException(
                f"unit {name} is a template and cannot be loaded or started; "
                f"start an instance of it such as {info.prefix}@1.{info.suffix}"
            )
        if name not in plan.names:
            plan.names.append(name)


def _plan_existing(
    plan: Plan,
    arg: str,
    existing: Unit,
    replace: bool,
    replaceable: Collection[DesiredState],
) -> None:
    local = _read_local_file(arg, existing.name)
    if local is None:
        return
    if local.unit_file.hash() == existing.hash:
        if replace:
            plan.warnings.append(
                f"Found same Unit({existing.name}) in Registry, nothing to do"
            )
        return
    if not replace:
        plan.warnings.append(
            f"WARNING: Unit {existing.name} in registry differs from local unit "
            f"file {local.path}. Add --replace to override."
        )
        return
    if existing.desired_state not in replaceable:
        plan.warnings.append(
            f"Warning: can not replace Unit({existing.name}) in state "
            f"'{existing.desired_state}', use the appropriate command"
        )
        return
    _validate(existing.name, local)
    plan.writes.append(
        NewUnit(
            name=existing.name,
            raw=local.unit_file.serialize(),
            source=local.path,
            replace=True,
            is_global=requirements_of(existing.name, local.unit_file).is_global,
        )
    )


def _plan_new(
    plan: Plan, arg: str, name: str, registry_units: Mapping[str, Unit]
) -> None:
    local = _read_local_file(arg, name)
    if local is None:
        local = _template_for(arg, name, registry_units)
    if local is None:
        raise click.ClickException(
            f"unit {name} is not in the registry and no unit file {arg!r} exists; "
            "give the path of the unit file"
        )
    plan.warnings.extend(_validate(name, local))
    plan.writes.append(
        NewUnit(
            name=name,
            raw=local.unit_file.serialize(),
            source=local.path,
            replace=False,
            is_global=requirements_of(name, local.unit_file).is_global,
        )
    )


def _template_for(
    arg: str, name: str, registry_units: Mapping[str, Unit]
) -> LocalFile | None:
    """Return the template an instance is created from: registry first, then disk."""
    info = UnitNameInfo.from_name(name)
    if info is None or not info.is_instance:
        return None
    template = registry_units.get(info.template)
    if template is not None:
        return LocalFile(
            path=f"{info.template} (registry)",
            unit_file=_parse(template.raw, info.template),
        )
    return _read_local_file(
        posixpath.join(posixpath.dirname(arg), info.template), info.template
    )


def _read_local_file(arg: str, name: str) -> LocalFile | None:
    """Read the file ``arg`` names, or ``<dir>/<name>`` when ``arg`` lacks the suffix.

    Returns None when no such file exists; raises ``click.ClickException`` when
    one exists but cannot be read or parsed.
    """
    candidates = [arg]
    mangled_path = posixpath.join(posixpath.dirname(arg), name)
    if mangled_path != arg:
        candidates.append(mangled_path)
    for candidate in candidates:
        path = Path(candidate)
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
            raise click.ClickException(
                f"cannot read unit file {candidate}: {reason}; check the path "
                "and its permissions"
            ) from err
        return LocalFile(path=candidate, unit_file=_parse(text, candidate))
    return None


def _parse(text: str, source: str) -> UnitFile:
    try:
        return UnitFile.parse(text)
    except UnitFileError as err:
        raise click.ClickException(f"invalid unit file {source}: {err}") from err


def _validate(name: str, local: LocalFile) -> list[str]:
    """Check the [X-Fleet] options; return the warnings, raise on errors."""
    try:
        warnings = validate_options(name, local.unit_file)
    except UnitFileError as err:
        raise click.ClickException(f"invalid unit file {local.path}: {err}") from err
    return [f"WARNING: unit {name}: {warning}" for warning in warnings]
