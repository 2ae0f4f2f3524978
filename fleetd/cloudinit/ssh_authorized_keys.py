"""``ssh_authorized_keys``: public keys for the default user's SSH logins."""

from __future__ import annotations

import base64
import binascii
import re

import yaml

from fleetd.cloudinit.context import Context
from fleetd.cloudinit.nodes import Entry, read_str_list
from fleetd.cloudinit.plan import AuthorizedKeys, Plan
from fleetd.cloudinit.report import Report, line_of

# Key types OpenSSH 9 accepts in authorized_keys.
KEY_TYPES = frozenset(
    {
        "ssh-rsa",
        "ssh-dss",
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def check_key(key: str, node: yaml.Node, path: str, report: Report) -> bool:
    """Report a line that is not ``[options] type base64 [comment]``."""
    fields = key.split()
    # authorized_keys lines may start with options; the type follows them.
    index = next((i for i, field in enumerate(fields) if field in KEY_TYPES), None)
    if index is None:
        report.error(
            node,
            f"invalid SSH public key in {path}: no key type such as ssh-ed25519 "
            "or ssh-rsa; paste the whole line of the .pub file",
        )
        return False
    blob = fields[index + 1] if index + 1 < len(fields) else ""
    try:
        if not _BASE64.match(blob):
            raise ValueError(blob)
        decoded = base64.b64decode(blob, validate=True)
    except (ValueError, binascii.Error):
        # sshd skips such a line, so it cannot lock anyone out or in.
        report.warning(
            node,
            f"invalid SSH public key in {path}: {blob[:20]!r} after "
            f"{fields[index]} is not base64 key data, so the key is skipped; "
            "paste the .pub line unchanged",
        )
        return False
    # The blob starts with the length-prefixed key type itself.
    if decoded[4 : 4 + len(fields[index])] != fields[index].encode():
        report.warning(
            node,
            f"SSH public key in {path}: the key data does not name type "
            f"{fields[index]}; check that the line is not cut or edited",
        )
    return True


def read_keys(node: yaml.Node | None, path: str, report: Report) -> tuple[str, ...]:
    """Return the valid keys of a key list, reporting the others."""
    keys = []
    for index, (key, item) in enumerate(read_str_list(node, path, report)):
        if check_key(key, item, f"{path}[{index}]", report):
            keys.append(key.strip())
    return tuple(keys)


def read(entry: Entry, plan: Plan, context: Context, report: Report) -> None:
    """Plan the keys for the default user (``--ssh-user``)."""
    keys = read_keys(entry.value, entry.path, report)
    if keys:
        plan.authorized_keys.append(
            AuthorizedKeys(context.ssh_user, keys, line_of(entry.key_node))
        )
