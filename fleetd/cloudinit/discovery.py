"""Tokens for etcd's discovery protocol, on a discovery service of your own.

etcd 3.4 bootstraps from a discovery URL through etcd's v2 keys API: it reads
``<URL>/_config/size`` for the cluster size and registers each member under
``<URL>/<member ID>``. Any etcd started with ``--enable-v2`` serves that API,
so a discovery URL is ``http://HOST:PORT/v2/keys/discovery/<token>`` once
the size key is set.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request

from fleetd.errors import CloudConfigError

KEY_DIRECTORY = "discovery"


def new_discovery_url(
    endpoint: str, size: int, token: str | None = None, timeout: float = 5.0
) -> str:
    """Create a token for ``size`` members on the etcd at ``endpoint``.

    Returns the discovery URL to put in ``coreos.etcd.discovery``. Raises
    CloudConfigError if the etcd cannot be reached or does not serve v2.
    """
    if size < 1:
        raise CloudConfigError(f"invalid cluster size {size}: use 1 or more")
    token = token or secrets.token_hex(16)
    url = f"{endpoint.rstrip('/')}/v2/keys/{KEY_DIRECTORY}/{token}"
    body = urllib.parse.urlencode({"value": str(size)}).encode()
    request = urllib.request.Request(f"{url}/_config/size", data=body, method="PUT")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = json.loads(response.read())
    except urllib.error.HTTPError as err:
        raise CloudConfigError(
            f"creating a discovery token on {endpoint} failed with HTTP {err.code}: "
            "start that etcd with --enable-v2"
        ) from err
    except (OSError, ValueError) as err:
        raise CloudConfigError(
            f"creating a discovery token on {endpoint} failed: {err}; check that "
            "an etcd with --enable-v2 listens there"
        ) from err
    if reply.get("node", {}).get("value") != str(size):
        raise CloudConfigError(f"unexpected reply from {endpoint}: {reply}")
    return url
