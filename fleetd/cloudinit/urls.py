"""Checks of the addresses and URLs that etcd and fleet settings take."""

from __future__ import annotations

import re
import urllib.parse

import yaml

from fleetd.cloudinit.report import Report

_HEX_TOKEN = re.compile(r"^[0-9a-f]{32}$")
PUBLIC_DISCOVERY_HOST = "discovery.etcd.io"


def split_host_port(
    text: str, node: yaml.Node, path: str, report: Report, *, port_required: bool
) -> tuple[str, int | None] | None:
    """Split ``host:port`` (``[v6]:port`` too); report an invalid form."""
    if "://" in text:
        report.error(
            node, f"invalid {path} {text!r}: write host:port, without a scheme"
        )
        return None
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?", text)
    if match is None or (port_required and match.group(2) is None):
        report.error(node, f"invalid {path} {text!r}: write host:port")
        return None
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 0 < port < 65536:
        report.error(node, f"invalid port in {path} {text!r}: use 1 to 65535")
        return None
    return match.group(1), port


def check_url(text: str, node: yaml.Node, path: str, report: Report) -> bool:
    """Check one ``http(s)://host[:port][/path]`` URL."""
    try:
        parsed = urllib.parse.urlsplit(text)
        port = parsed.port
    except ValueError as err:
        report.error(node, f"invalid URL {text!r} in {path}: {err}")
        return False
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        report.error(
            node,
            f"invalid URL {text!r} in {path}: write http://host:port or "
            "https://host:port",
        )
        return False
    if port == 0:
        report.error(node, f"invalid URL {text!r} in {path}: port 0")
        return False
    return True


def check_url_list(text: str, node: yaml.Node, path: str, report: Report) -> list[str]:
    """Check a comma-separated URL list and return its URLs."""
    urls = [item.strip() for item in text.split(",") if item.strip()]
    if not urls:
        report.error(node, f"{path} is empty: give at least one URL")
    return [url for url in urls if check_url(url, node, path, report)]


def check_discovery(text: str, node: yaml.Node, path: str, report: Report) -> bool:
    """Check a discovery URL; a template placeholder in it is an error."""
    if "<" in text or ">" in text:
        report.error(
            node,
            f"invalid {path} {text!r}: replace the <token> placeholder with a "
            "token from the discovery service",
        )
        return False
    if not check_url(text, node, path, report):
        return False
    parsed = urllib.parse.urlsplit(text)
    token = parsed.path.rstrip("/").rpartition("/")[2]
    if not token:
        report.error(node, f"invalid {path} {text!r}: the URL has no token")
        return False
    if parsed.hostname == PUBLIC_DISCOVERY_HOST and not _HEX_TOKEN.match(token):
        report.warning(
            node,
            f"{path} token {token!r} is not 32 hex digits, so it is likely a "
            "placeholder: create a token and put its URL here",
        )
    return True
