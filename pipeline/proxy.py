"""The proxy the environment names for the API, read as curl reads it, once per client.

`https_proxy` / `HTTPS_PROXY`, then `all_proxy` / `ALL_PROXY` (for http only the lower-case
`http_proxy`, as curl); `no_proxy` honoured; loopback hosts (the sandbox) never go through one.
aiohttp's own `trust_env` would look it up on a thread for every request, add ~/.netrc
credentials to requests to the API host, and parse every *_proxy variable (a broken
`HTTP_PROXY` had crashed an https run, exit 4). A variable that names no usable proxy stops the
run before any request, its value never repeated: it may hold the proxy's password.
"""

from __future__ import annotations

import os
import urllib.request

import aiohttp
import aiohttp.helpers
import yarl

from .config_values import is_loopback
from .errors import ConfigError


def env_proxy(url: str) -> tuple[yarl.URL | None, aiohttp.BasicAuth | None]:
    """The proxy the environment names for `url` (https_proxy / HTTPS_PROXY, honouring no_proxy),
    as curl and requests read it: (its URL without credentials, its credentials). Loopback hosts
    (the sandbox) never go through one. Read once per client, not per request (aiohttp's own
    `trust_env` looks it up on a thread for every request, and would also add ~/.netrc
    credentials to requests to the API host)."""
    target = yarl.URL(url)
    if target.host is None or is_loopback(target.host):
        return None, None
    name, value = _proxy_variable(target.scheme)
    if name is None or value is None or urllib.request.proxy_bypass_environment(target.host):  # type: ignore[attr-defined]
        return None, None
    text = value.strip()
    if "://" not in text:  # `proxy.corp:3128`, as curl takes it: an HTTP proxy (aiohttp had failed
        text = "http://" + text  # every request with InvalidURL, recorded as a lost connection)
    try:  # the value is never repeated: it may hold the proxy's password
        proxy = yarl.URL(text)
        valid = proxy.host is not None and proxy.port is not None
    except (ValueError, TypeError):
        valid = False
    if not valid:  # a bad port or address had been a crash (exit 4): aiohttp parsed every *_proxy
        raise ConfigError(f"the proxy variable {name} is not a proxy URL like http://proxy.corp:3128; fix or unset it")
    if proxy.scheme not in ("http", "https") and name.lower() == "all_proxy":
        return None, None  # set for other tools (socks5://...): direct, as before it was read at all
    if proxy.scheme not in ("http", "https"):
        raise ConfigError(
            f"the proxy variable {name} names a {proxy.scheme} proxy; si-ingest goes through HTTP proxies"
            " (http://host:port): unset it or name one"
        )
    if proxy.explicit_port is None:
        proxy = proxy.with_port(1080)  # curl's port for a proxy named without one
    return aiohttp.helpers.strip_auth_from_url(proxy)  # credentials in the variable itself, apart


def _proxy_variable(scheme: str) -> tuple[str, str] | tuple[None, None]:
    """The variable naming the proxy for `scheme`, as curl looks: `https_proxy`, `HTTPS_PROXY`,
    then `all_proxy`, `ALL_PROXY` (for http, only the lower-case `http_proxy`, as curl, since
    a CGI server sets `HTTP_PROXY` from a request header); an empty one is not set."""
    names = [f"{scheme}_proxy", *([f"{scheme.upper()}_PROXY"] if scheme != "http" else []), "all_proxy", "ALL_PROXY"]
    for name in names:
        value = os.environ.get(name)
        if value and value.strip():
            return name, value
    return None, None
