"""The global options and the click classes that give them the original's shape.

The original fleetctl (cobra) accepted its global options before or after the
command name, took ``FLEETCTL_<NAME>`` variables for them, matched unambiguous
command prefixes and accepted ``--flag=false`` for boolean flags. Plain click
does none of this, so ``FleetGroup`` and ``FleetCommand`` add it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

from fleetctl.client import (
    DEFAULT_API_ENDPOINT,
    DEFAULT_ENDPOINT,
    DEFAULT_KEY_PREFIX,
    Settings,
)

TRUE_WORDS = frozenset({"1", "t", "true", "y", "yes", "on"})
FALSE_WORDS = frozenset({"0", "f", "false", "n", "no", "off"})


@dataclass(frozen=True)
class GlobalOption:
    """One global option: its flags, the Settings field it sets, its help."""

    flags: tuple[str, ...]
    attribute: str
    help: str
    default: Any = None
    type: Any = None
    is_bool: bool = False
    hidden: bool = False

    def env_var(self) -> str:
        """Return the FLEETCTL_* variable named after the first long flag."""
        long_flag = next(flag for flag in self.flags if flag.startswith("--"))
        name = long_flag[2:].split("/")[0]
        return "FLEETCTL_" + name.upper().replace("-", "_")


GLOBAL_OPTIONS: tuple[GlobalOption, ...] = (
    GlobalOption(
        ("--endpoint",),
        "endpoint",
        "Where the fleet API is (unix:///PATH, http://HOST:PORT or "
        f"https://HOST:PORT; default {DEFAULT_API_ENDPOINT}), or with "
        f"--driver=etcd the etcd URLs, comma-separated (default {DEFAULT_ENDPOINT}).",
    ),
    GlobalOption(
        ("--driver",),
        "driver",
        "How to reach the cluster: API (fleetd's HTTP API) or etcd (directly). "
        "Default: API, or etcd when every --endpoint URL has port 2379 or 4001.",
        type=click.Choice(["API", "etcd"], case_sensitive=False),
    ),
    GlobalOption(
        ("--etcd-key-prefix",),
        "etcd_key_prefix",
        "Key prefix of the fleet data in etcd.",
        default=DEFAULT_KEY_PREFIX,
    ),
    GlobalOption(
        ("--request-timeout",),
        "request_timeout",
        "Seconds to allow a single API or etcd request before it fails.",
        default=3.0,
        type=click.FloatRange(min=0.0, min_open=True),
    ),
    GlobalOption(
        ("--debug/--no-debug",),
        "debug",
        "Log debug messages to stderr.",
        default=False,
        is_bool=True,
    ),
    GlobalOption(
        ("--ca-file",), "ca_file", "CA certificate (PEM) for https or etcd TLS.", ""
    ),
    GlobalOption(
        ("--cert-file",),
        "cert_file",
        "Client certificate (PEM) for https or etcd TLS.",
        "",
    ),
    GlobalOption(
        ("--key-file",), "key_file", "Client key (PEM) for https or etcd TLS.", ""
    ),
    GlobalOption(("--etcd-cafile",), "ca_file", "Deprecated: --ca-file.", hidden=True),
    GlobalOption(
        ("--etcd-certfile",), "cert_file", "Deprecated: --cert-file.", hidden=True
    ),
    GlobalOption(
        ("--etcd-keyfile",), "key_file", "Deprecated: --key-file.", hidden=True
    ),
    GlobalOption(
        ("--tunnel",),
        "tunnel",
        "Reach fleetd or etcd through SSH to HOST[:PORT] (port 22 by default).",
        "",
    ),
    GlobalOption(
        ("--strict-host-key-checking/--no-strict-host-key-checking",),
        "strict_host_key_checking",
        "Check SSH host keys against --known-hosts-file, asking about new ones.",
        default=True,
        is_bool=True,
    ),
    GlobalOption(
        ("--ssh-username",),
        "ssh_username",
        "User name to log in as over SSH.",
        "core",
    ),
    GlobalOption(
        ("--known-hosts-file",),
        "known_hosts_file",
        "known_hosts file for SSH; unused without strict host key checking.",
        "~/.fleetctl/known_hosts",
    ),
    GlobalOption(
        ("--ssh-timeout",),
        "ssh_timeout",
        "Seconds allowed to set up an SSH connection (rounded up; 0: ssh's default).",
        10.0,
        type=click.FloatRange(min=0.0),
    ),
    GlobalOption(
        ("--experimental-api/--no-experimental-api",),
        "experimental_api",
        "Deprecated and ignored.",
        default=True,
        is_bool=True,
        hidden=True,
    ),
)

# Settings fields that only exist so that scripts' options are accepted.
IGNORED_ATTRIBUTES = frozenset({"experimental_api"})


def _param_name(option: GlobalOption) -> str:
    first = option.flags[0].split("/")[0]
    return "global_" + first.lstrip("-").replace("-", "_")


def group_params() -> list[click.Parameter]:
    """Build the global options of the group, each with its FLEETCTL_* variable."""
    params: list[click.Parameter] = []
    for option in GLOBAL_OPTIONS:
        params.append(
            click.Option(
                [*option.flags, _param_name(option)],
                default=option.default,
                type=option.type,
                is_flag=option.is_bool or None,
                envvar=option.env_var(),
                show_envvar=not option.hidden,
                show_default=option.default not in (None, "", False),
                hidden=option.hidden,
                help=option.help,
            )
        )
    return params


def command_params() -> list[click.Parameter]:
    """Build copies of the global options for use after a command name.

    They have no default and no variable: a value given on the command line
    overrides the group's value, like a cobra persistent flag.
    """
    params: list[click.Parameter] = []
    for option in GLOBAL_OPTIONS:
        params.append(
            click.Option(
                [*option.flags, _param_name(option)],
                default=None,
                type=option.type,
                is_flag=option.is_bool or None,
                hidden=option.hidden,
                help=option.help,
                expose_value=False,
                callback=_override_setting(option),
            )
        )
    return params


def _override_setting(
    option: GlobalOption,
) -> Callable[[click.Context, click.Parameter, Any], None]:
    def override(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        assert param.name is not None
        if ctx.get_parameter_source(param.name) is not ParameterSource.COMMANDLINE:
            return
        settings = ctx.find_object(ClickSettings)
        if settings is not None:
            settings.set(option.attribute, value)

    return override


class ClickSettings(Settings):
    """Settings plus the accepted-but-ignored options, kept on the click context."""

    def __init__(self) -> None:
        super().__init__()
        self.ignored: dict[str, Any] = {}

    def set(self, attribute: str, value: Any) -> None:
        """Set a global option's value by its Settings field name."""
        if attribute in IGNORED_ATTRIBUTES:
            self.ignored[attribute] = value
        else:
            setattr(self, attribute, value)


def settings_from_group_params(values: dict[str, Any]) -> ClickSettings:
    """Build the settings from the group's parsed global options."""
    settings = ClickSettings()
    for option in GLOBAL_OPTIONS:
        value = values.get(_param_name(option))
        if option.hidden and not value:
            continue
        if value is not None:
            settings.set(option.attribute, value)
    return settings


def rewrite_bool_values(args: Sequence[str], command: click.Command) -> list[str]:
    """Rewrite cobra-style ``--flag=true|false`` into click's flag forms.

    ``--flag=false`` becomes the flag's ``--no-`` form when it has one and is
    dropped otherwise (every such flag is off by default). Arguments after
    ``--`` are left alone. Raises ``click.UsageError`` for a value that is
    not a boolean.
    """
    flags: dict[str, tuple[str, str | None]] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.is_flag and param.opts:
            for opt in param.opts:
                off = param.secondary_opts[0] if param.secondary_opts else None
                flags[opt] = (opt, off)

    rewritten: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            rewritten.extend(args[index:])
            break
        name, equals, value = arg.partition("=")
        if not equals or name not in flags:
            rewritten.append(arg)
            continue
        on_form, off_form = flags[name]
        word = value.lower()
        if word in TRUE_WORDS:
            rewritten.append(on_form)
        elif word in FALSE_WORDS:
            if off_form is not None:
                rewritten.append(off_form)
        else:
            raise click.UsageError(
                f"invalid value {value!r} for {name}: use true or false"
            )
    return rewritten


class FleetCommand(click.Command):
    """A command that also accepts the global options and ``--flag=false``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(command_params())

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, rewrite_bool_values(args, self))

    def format_options(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        global_names = {_param_name(option) for option in GLOBAL_OPTIONS}
        local_rows: list[tuple[str, str]] = []
        global_rows: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            if isinstance(param, click.Argument):
                continue  # The usage line shows the arguments.
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.name in global_names:
                global_rows.append(record)
            else:
                local_rows.append(record)
        if local_rows:
            with formatter.section("Options"):
                formatter.write_dl(local_rows)
        if global_rows:
            with formatter.section("Global options (also accepted before the command)"):
                formatter.write_dl(global_rows)


class FleetGroup(click.Group):
    """The fleetctl group: global options, prefix matching, ``--flag=false``.

    ``lazy_commands`` maps command names to ``module:attribute`` paths that
    are imported when the command is first looked up.
    """

    command_class = FleetCommand

    def __init__(
        self,
        *args: Any,
        lazy_commands: Mapping[str, str] | None = None,
        hidden_commands: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})
        self.hidden_commands = frozenset(hidden_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_commands})

    def _load(self, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        path = self.lazy_commands.get(name)
        if path is None:
            return None
        module_name, _, attribute = path.partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{path} is not a click command")
        self.add_command(command, name)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Only the group's own options are rewritten here. The command
        # rewrites its own options, because only it has the list of its flags.
        head: list[str] = []
        for index, arg in enumerate(args):
            if not arg.startswith("-"):
                head = rewrite_bool_values(args[:index], self) + args[index:]
                break
        else:
            head = rewrite_bool_values(args, self)
        return super().parse_args(ctx, head)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self._load(cmd_name)
        if command is not None:
            return command
        matches = [
            name
            for name in self.list_commands(ctx)
            if name.startswith(cmd_name) and name not in self.hidden_commands
        ]
        if len(matches) == 1:
            return self._load(matches[0])
        if len(matches) > 1:
            ctx.fail(
                f"command {cmd_name!r} is ambiguous: it could be "
                f"{', '.join(sorted(matches))}; type more of the name"
            )
        return None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        # Report the full name of a prefix-matched command in its help and errors.
        _, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else None), command, rest


def get_settings() -> ClickSettings:
    """Return the settings of the running fleetctl invocation."""
    ctx = click.get_current_context()
    settings = ctx.find_object(ClickSettings)
    if settings is None:
        # Only a command invoked without the group (in a test) gets here.
        settings = ctx.ensure_object(ClickSettings)
    return settings


def warn(message: str) -> None:
    """Print a warning line to stderr."""
    click.echo(message, err=True)


def exit_with(code: int) -> None:
    """Exit with ``code`` after flushing stdout, without a traceback."""
    sys.stdout.flush()
    click.get_current_context().exit(code)
