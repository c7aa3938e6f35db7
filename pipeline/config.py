"""TOML file + command-line flags + environment -> frozen config objects, checked on load.

Precedence: a flag beats the config file, which beats the defaults below. Credentials come
only from the environment (the config may rename the variables), never from flags or files.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from .config_values import PLAIN_ENV_NAME, UUID, check_base_url, check_value, did_you_mean, env_name
from .errors import ConfigError, reason_of
from .models import API_FIELDS, OPTIONAL_FIELDS, SIR_CHANNELS, SIR_FLAGS

DEFAULT_BASE_URL = "https://app.zyntrohq.com/apis/v2/public/crm"
DEFAULT_RESULTS = "si-results.csv"
DEFAULT_RATE = 20.0
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
# Seconds a kept-alive connection may sit idle before it is no longer reused. Below the shortest
# idle timeout of common servers (Apache 5 s; nginx 75 s, AWS ALB 60 s): reusing a connection
# the server is closing at that moment loses the request in a way no client can tell from one
# the API processed (`unknown`). Reconnecting after 4 s of idleness costs a handshake per
# request only at rates where a handshake is cheap.
DEFAULT_KEEPALIVE_TIMEOUT = 4.0
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 20.0
DEFAULT_CHUNK_ROWS = 50_000
DEFAULT_SIR_STATUSES = ("Pending",)
DEFAULT_BREAKER = 50
DEFAULT_PROGRESS_EVERY = 5.0

LogFormat = Literal["json", "console"]
LogLevel = Literal["debug", "info", "warning", "error"]


class Secret:
    """A credential: its value leaves memory only through `reveal()`, never through repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    # API prefix; requests go to {base_url}/addSIRequest. http:// only for loopback hosts.
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    # seconds to open a connection (a request that never connected is safe to retry)
    read_timeout: float = DEFAULT_READ_TIMEOUT
    # seconds to wait for the answer once the request is sent (a timeout here is `unknown`)
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    # seconds an idle connection is kept for reuse; keep it below your gateway's idle timeout
    retry_gateway_errors: bool = False
    # retry HTTP 500/502/504 as "not processed". Off by default: a gateway may answer them after
    # the API created the request, and a retry then sends the customer a second email. Turn on
    # only if your gateway guarantees that these statuses mean the request never reached the API.
    retry_503: bool = True
    # retry HTTP 503 as "not processed" (the contract; nginx limit_req, HAProxy's queue, a load
    # balancer without a backend). Turn off if a gateway in front of the API answers 503 for a
    # backend that failed after the request went up to it (Varnish's "Backend fetch failed", an
    # nginx error_page mapping 502/504 to 503): 503s are then `unknown`.
    check_echo: bool = True
    # a success answer echoing another contact_id than the request's (a gateway mixing requests
    # up) stops the run, that row `unknown`. Turn off for a CRM that echoes a merged contact's id.
    ca_bundle: Path | None = None
    # a PEM file of extra CA certificates (a corporate TLS proxy); certificates are always verified


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    results: Path = Path(DEFAULT_RESULTS)
    # results file, .csv or .parquet; its journal lives beside it as <results>.journal
    rate: float | Literal["auto"] = DEFAULT_RATE
    # requests per second, a ceiling over every 1-second window; "auto" adapts to the server's 429s
    concurrency: int = DEFAULT_CONCURRENCY
    # requests in flight at most
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    # tries per row for retryable failures (429, 5xx, connect errors, garbled answers)
    resend_unknown: bool = False
    # also send rows whose earlier outcome is `unknown` (may duplicate: see README)
    backoff_base: float = DEFAULT_BACKOFF_BASE
    # seconds; retry n waits uniform(0, min(backoff_cap, backoff_base * 2**(n-1))) unless Retry-After says more
    backoff_cap: float = DEFAULT_BACKOFF_CAP
    # seconds; the longest backoff between two tries of a row
    fsync: bool = True
    # fsync the journal before any request leaves (survives power loss, not only kill -9)
    log_format: LogFormat | None = None
    # "json" or "console"; default: json unless stderr is a terminal
    dry_run: bool = False
    # validate only, send nothing (same as the `validate` command)
    breaker: int = DEFAULT_BREAKER
    # stop (exit 3) when the last N API answers are all the same row-level error, min(N, 10) requests in a
    # row end `unknown`, or min(N, 10) rows in a row used up their tries never connected; 0: never
    progress_every: float = DEFAULT_PROGRESS_EVERY
    # seconds between progress lines off a terminal (a progress bar on one)
    log_level: LogLevel = "info"
    # "debug", "info", "warning" or "error"
    summary_json: Path | None = None
    # also write the end-of-run summary as JSON here (schema in the README)
    report_html: Path | None = None
    # also write the HTML run report here


@dataclass(frozen=True, slots=True, kw_only=True)
class InputConfig:
    default_org_id: str | None = None
    # org_id for rows without one; ZYNTRO_ORG_ID (or credentials.org_id_env) wins over it
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    # rows per batch read from a file; memory is bounded by this, not by the file
    sir_statuses: tuple[str, ...] = DEFAULT_SIR_STATUSES
    # allowed values of the optional sir_status column (the API documents only "Pending")
    datetime_formats: tuple[str, ...] = ()
    # strftime patterns a sir_planned_dt may also be written in ("%d/%m/%Y %H:%M"); such cells are
    # rewritten to the API's YYYY-MM-DD HH:MM:SS. Anything matching none of them stays invalid.
    normalize_case: bool = False
    # accept sir_flag and sir_channel in any letter case (Keep_Warm -> keep_warm)


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialsEnv:
    api_key_env: str = "ZYNTRO_API_KEY"
    # environment variable holding the API key
    developer_secret_env: str = "ZYNTRO_DEVELOPER_SECRET"
    # environment variable holding the developer secret (zdk_...)
    org_id_env: str = "ZYNTRO_ORG_ID"
    # environment variable holding the default org_id


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    api: ApiConfig = field(default_factory=ApiConfig)
    run: RunConfig = field(default_factory=RunConfig)
    input: InputConfig = field(default_factory=InputConfig)
    credentials: CredentialsEnv = field(default_factory=CredentialsEnv)
    columns: Mapping[str, str] = field(default_factory=dict)
    # API field name -> the input's own column name
    default_org_id: str | None = None
    # resolved from the environment or [input].default_org_id
    orgs: Mapping[str, OrgConfig] = field(default_factory=dict)
    # org_id (lower-case) -> its own API key and rate: a multi-org run ([orgs."<org_id>"])
    defaults: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # [defaults."<file name>"] (or "*" for every file): constant sir_channel / sir_flag / sir_status
    # for a file that lacks the column or leaves the cell empty

    def defaults_for(self, file_name: str) -> dict[str, str]:
        return {**self.defaults.get("*", {}), **self.defaults.get(file_name, {})}


@dataclass(frozen=True, slots=True, kw_only=True)
class OrgConfig:
    api_key_env: str
    # environment variable holding this org's API key (the developer secret is shared)
    rate: float | Literal["auto"] | None = None
    # this org's requests per second (default: run.rate); each org has its own ceiling


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: Secret | None  # None in a multi-org run where every row's org has its own key
    developer_secret: Secret
    org_keys: Mapping[str, Secret] = field(default_factory=dict)

    def values(self) -> tuple[str, ...]:
        keys = [self.api_key.reveal()] if self.api_key is not None else []
        return (*keys, *(k.reveal() for k in self.org_keys.values()), self.developer_secret.reveal())

    def for_org(self, org_id: str | None) -> Credentials:
        """The single-key credentials a client uses for `org_id` (the default key otherwise)."""
        key = self.org_keys.get(org_id or "") or self.api_key
        if key is None:
            raise ConfigError(
                f'no API key for org {org_id}: add [orgs."{org_id}"] to the config or set the default key'
            )
        return Credentials(key, self.developer_secret)


_SECTIONS: dict[str, type] = {
    "api": ApiConfig,
    "run": RunConfig,
    "input": InputConfig,
    "credentials": CredentialsEnv,
}
COLUMN_KEYS: frozenset[str] = frozenset(API_FIELDS) | frozenset(OPTIONAL_FIELDS)


def results_file(path: Path, *, reading: bool = False) -> Path:
    """The results file a path names, its folder's links followed (every name of a folder then
    shares one ledger and lock). A path that is itself a symbolic link is refused (ConfigError),
    unless only `reading` (`report`, which follows it): following it gave a link re-pointed
    every night (`ln -sfn results-$(date +%F).csv si-results.csv`) a new, empty ledger each
    night, every row sent again; not following it kept the ledger beside the link, renamed the
    results over the link, and a run given the file's own name found no ledger and sent every
    row again. Either way the ledger's place depends on a name that can change under it."""
    if os.path.islink(path):
        if reading:
            return Path(os.path.realpath(path))
        raise ConfigError(
            f"the results file {path} is a symbolic link (to {os.readlink(path)}): name the file itself; its"
            " journal and lock live beside it, and a link re-pointed between runs would start a new ledger"
        )
    return Path(os.path.realpath(path)) if _linked_folder(path) else path


def _linked_folder(path: Path) -> bool:
    parent = path.parent
    return os.path.realpath(parent) != os.path.abspath(parent)


def load_config(
    path: Path | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read `path` (may be None), apply `overrides` ({"run.rate": 40, ...}), check everything."""
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    where = "defaults"
    if path is not None:
        where = str(path)
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {reason_of(exc)}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except UnicodeDecodeError as exc:  # TOML is UTF-8: a Latin-1 comment had crashed (exit 4)
            raise ConfigError(f"config file {path} is not UTF-8 (byte {exc.start}); TOML files must be") from None

    for name in raw:
        if name not in _SECTIONS and name not in ("columns", "orgs", "defaults"):
            known = [*_SECTIONS, "columns", "orgs", "defaults"]
            raise ConfigError(f"{where}: unknown section or key '{name}'{did_you_mean(name, known)}")
    sections: dict[str, dict[str, Any]] = {}
    for name, cls in _SECTIONS.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: '{name}' must be a table")
        sections[name] = dict(table)
        fields_ = sorted(f.name for f in fields(cls))
        for key in table:
            if key not in fields_:
                raise ConfigError(f"{where}: unknown key '{name}.{key}'{did_you_mean(key, fields_, name + '.')}")
    origin: dict[str, str] = {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        name, key = dotted.split(".", 1)
        sections[name][key] = value
        origin[dotted] = "--" + key.replace("_", "-")

    def build(cls: type, name: str) -> Any:
        return cls(**{k: check_value(name, k, v, origin.get(f"{name}.{k}", where)) for k, v in sections[name].items()})

    api, run, inp, creds = (build(cls, name) for name, cls in _SECTIONS.items())
    run = replace(run, results=results_file(run.results))
    columns = raw.get("columns", {})
    if not isinstance(columns, dict):
        raise ConfigError(f"{where}: 'columns' must be a table of api_field = \"input column\"")
    for key, value in columns.items():
        if key not in COLUMN_KEYS:
            raise ConfigError(
                f"{where}: unknown key 'columns.{key}'{did_you_mean(key, sorted(COLUMN_KEYS), 'columns.')}"
            )
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: 'columns.{key}' must be a non-empty string (the input's column name)")
    mapped: dict[str, str] = {}
    for key in sorted(COLUMN_KEYS, key=lambda k: k not in columns):  # one column read as two fields is a mistake
        value = columns.get(key, key)  # (org_id = "contact_id" sent every contact's UUID as its org)
        if value in mapped:
            raise ConfigError(
                f"{where}: the column {value!r} would be read as both {mapped[value]} and {key} ([columns]);"
                " map each field to a column of its own"
            )
        mapped[value] = key
    check_base_url(api.base_url)
    from_env = (env.get(creds.org_id_env) or "").strip()
    if from_env and not UUID.fullmatch(from_env):
        raise ConfigError(
            f"{creds.org_id_env} must be the default org's UUID; its value is not repeated here, in case it is a key"
        )
    default_org = from_env or inp.default_org_id
    orgs = _orgs(raw.get("orgs", {}), where)
    defaults = _defaults(raw.get("defaults", {}), where, inp.sir_statuses)
    return Config(
        defaults=defaults,
        api=api,
        run=run,
        input=inp,
        credentials=creds,
        columns=dict(columns),
        default_org_id=default_org,
        orgs=orgs,
    )


def load_credentials(config: Config, env: Mapping[str, str] | None = None) -> Credentials:
    """Every key from the environment. With [orgs], the default API key is optional (rows of
    an org without an entry then need it, which the run checks before sending)."""
    env = os.environ if env is None else env
    names = config.credentials
    wanted = [names.developer_secret_env, *(org.api_key_env for org in config.orgs.values())]
    if not config.orgs:
        wanted.insert(0, names.api_key_env)
    missing = [n for n in dict.fromkeys(wanted) if not env.get(n, "").strip()]
    if missing:
        hidden = "a variable whose name is not repeated (not in capitals: it may be a value)"
        shown = [n if PLAIN_ENV_NAME.fullmatch(n) else hidden for n in missing]
        raise ConfigError(
            f"set {' and '.join(shown)} in the environment (credentials are never read from flags or files)"
        )
    default = env.get(names.api_key_env, "").strip()
    return Credentials(
        api_key=Secret(default) if default else None,
        developer_secret=Secret(env[names.developer_secret_env].strip()),
        org_keys={org_id: Secret(env[org.api_key_env].strip()) for org_id, org in config.orgs.items()},
    )


DEFAULTABLE = {"sir_flag": SIR_FLAGS, "sir_channel": SIR_CHANNELS, "sir_status": None}


def _defaults(raw: Any, where: str, statuses: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """[defaults."<file>"] tables of constant sir_flag / sir_channel / sir_status, checked now."""
    if not isinstance(raw, dict):
        raise ConfigError(f'{where}: \'defaults\' must be tables like [defaults."planned.csv"] sir_channel = "email"')
    out: dict[str, dict[str, str]] = {}
    for file_name, table in raw.items():
        name = f'defaults."{file_name}"'
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {name} must be a table of sir_flag / sir_channel / sir_status")
        for key, value in table.items():
            if key not in DEFAULTABLE:
                raise ConfigError(f"{where}: unknown key '{name}.{key}'{did_you_mean(key, sorted(DEFAULTABLE))}")
            allowed = DEFAULTABLE[key] or statuses
            if value not in allowed:
                raise ConfigError(f"{where}: {name}.{key} must be one of {', '.join(allowed)}, not {value!r}")
        out[file_name] = dict(table)
    return out


def _orgs(raw: Any, where: str) -> dict[str, OrgConfig]:
    """[orgs."<org_id>"] tables: api_key_env (required) and rate."""
    if not isinstance(raw, dict):
        raise ConfigError(f'{where}: \'orgs\' must be tables like [orgs."<org_id>"] with api_key_env = "VAR"')
    orgs: dict[str, OrgConfig] = {}
    for org_id, table in raw.items():
        name = f'orgs."{org_id}"'
        if not UUID.fullmatch(org_id.strip()):
            raise ConfigError(f"{where}: {name}: the key must be the org's UUID")
        if not isinstance(table, dict):
            raise ConfigError(f'{where}: {name} must be a table with api_key_env = "VAR"')
        for key in table:
            if key not in ("api_key_env", "rate"):
                raise ConfigError(f"{where}: unknown key '{name}.{key}'{did_you_mean(key, ['api_key_env', 'rate'])}")
        variable = env_name(table.get("api_key_env"), f"{where}: {name}.api_key_env")
        rate = check_value("run", "rate", table["rate"], where) if "rate" in table else None
        org = org_id.strip().lower()
        if org in orgs:  # one org written twice (in two cases): the later table had replaced the earlier
            raise ConfigError(f"{where}: {name} is there twice (UUIDs are compared in lower case)")
        for other_id, other in orgs.items():  # one key for two orgs sends one org's rows with the other's key
            if other.api_key_env == variable:
                raise ConfigError(
                    f'{where}: {name} and orgs."{other_id}" both use {variable}: each org has its own key'
                )
        orgs[org] = OrgConfig(api_key_env=variable, rate=rate)
    return orgs
