"""An HTTPS proxy named by the environment: the API through a CONNECT tunnel, loopback never.

The proxy here is a small loopback CONNECT proxy that resolves the API's name itself (as a
corporate proxy does), so the CLI reaches `https://api.zyntro.test:PORT` only through it.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
import yarl

from pipeline import results as results_mod
from pipeline.errors import ConfigError
from pipeline.proxy import env_proxy

from .conftest import CREDENTIAL_ENV, make_rows, run_cli

API_HOST = "api.zyntro.test"


class ConnectProxy:
    """CONNECT host:port -> 127.0.0.1:port (HTTP/1.1), optionally asking for Basic credentials."""

    def __init__(self, credentials: str | None = None, answer: bytes | None = None) -> None:
        self.credentials = credentials
        self.answer = answer  # in place of a tunnel: these bytes to every CONNECT, then close
        self.tunnels: list[str] = []  # host:port of every tunnel opened
        self.refused = 0
        self._writers: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(5)

    def _serve(self, started: threading.Event) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            server = await asyncio.start_server(self._client, "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            await self._stop.wait()
            server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in self._writers:
                w.close()
            await server.wait_closed()

        self.loop.run_until_complete(main())
        self.loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        if self.answer is not None:  # a broken proxy: closes, or answers what is not HTTP
            self.refused += 1
            writer.write(self.answer)
            await writer.drain()
            writer.close()
            return
        method, target, _ = head[0].split(" ")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        wanted = "Basic " + base64.b64encode(self.credentials.encode()).decode() if self.credentials else None
        if method != "CONNECT" or (wanted and headers.get("proxy-authorization") != wanted):
            self.refused += 1
            writer.write(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="p"\r\n')
            writer.write(b"Content-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        port = target.rpartition(":")[2]
        self.tunnels.append(target)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", int(port))
        self._writers.append(upstream_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(5)


@pytest.fixture
def proxy() -> Iterator[type[ConnectProxy]]:
    made: list[ConnectProxy] = []

    class Made(ConnectProxy):
        def __init__(self, credentials: str | None = None, answer: bytes | None = None) -> None:
            super().__init__(credentials, answer)
            made.append(self)

    yield Made
    for p in made:
        p.stop()


@pytest.fixture
def api_cert(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "api-key.pem", tmp_path / "api-cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", f"/CN={API_HOST}", "-addext", f"subjectAltName=DNS:{API_HOST}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return key, cert


def _run_through(box, proxy_url: str, api_cert: tuple[Path, Path], rows: Path, out: Path, tmp_path: Path, *extra: str):  # type: ignore[no-untyped-def]
    """The CLI run against `box` as https://api.zyntro.test:PORT, with https_proxy=`proxy_url`."""
    config = tmp_path / "c.toml"
    config.write_text(f'[api]\nca_bundle = "{api_cert[1]}"\n')
    base = f"https://{API_HOST}:{yarl.URL(box.url).port}/apis/v2/public/crm"
    args = ("run", str(rows), "--base-url", base, "--results", str(out), "--config", str(config), *extra)
    return run_cli(*args, env={**CREDENTIAL_ENV, "https_proxy": proxy_url})


def test_the_api_is_reached_through_the_environments_proxy(sandbox, proxy, api_cert, write_input, tmp_path):
    key, cert = api_cert
    box = sandbox("--tls-cert", str(cert), "--tls-key", str(key))
    port = yarl.URL(box.url).port
    tunnel = proxy(credentials="alice:s3cret-proxy-pw")
    rows, out = write_input("a.csv", make_rows(6)), tmp_path / "r.csv"
    done = _run_through(box, f"http://alice:s3cret-proxy-pw@127.0.0.1:{tunnel.port}", api_cert, rows, out, tmp_path)
    assert done.code == 0, done.stderr
    assert len(box.created()) == 6 and set(results_mod.read(out)["status"]) == {"created"}
    assert tunnel.tunnels and set(tunnel.tunnels) == {f"{API_HOST}:{port}"} and tunnel.refused == 0
    assert done.event("submit.start")["proxy"] == f"http://127.0.0.1:{tunnel.port}"  # no credentials in it
    assert "s3cret-proxy-pw" not in done.stderr + done.stdout + out.read_text()


def test_a_proxy_that_wants_credentials_stops_the_run_before_anything_is_sent(
    sandbox, proxy, api_cert, write_input, tmp_path
):
    key, cert = api_cert
    box = sandbox("--tls-cert", str(cert), "--tls-key", str(key))
    tunnel = proxy(credentials="alice:right")
    rows, out = write_input("a.csv", make_rows(4)), tmp_path / "r.csv"
    refused = _run_through(box, f"http://alice:wrong@127.0.0.1:{tunnel.port}", api_cert, rows, out, tmp_path)
    assert refused.code == 2 and "Traceback" not in refused.stderr
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("si-ingest: aborted:")]
    assert "proxy refuses the credentials in the proxy variable (407)" in line and "wrong" not in refused.stderr
    frame = results_mod.read(out)
    assert box.created() == [] and set(frame["status"]) == {"pending"} and tunnel.refused >= 1
    assert set(frame["error_code"]) <= {"PROXY_AUTH_REQUIRED", None}  # not INTERRUPTED: no signal came


def test_loopback_and_no_proxy_hosts_go_direct(monkeypatch):
    monkeypatch.setenv("https_proxy", "http://u:p@proxy.corp:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    assert env_proxy("https://127.0.0.1:8443/crm/addSIRequest") == (None, None)
    assert env_proxy("https://localhost/crm/addSIRequest") == (None, None)
    assert env_proxy("https://internal.example/crm/addSIRequest") == (None, None)
    url, auth = env_proxy("https://app.zyntrohq.com/apis/v2/public/crm/addSIRequest")
    assert str(url) == "http://proxy.corp:3128" and auth is not None and (auth.login, auth.password) == ("u", "p")
    monkeypatch.delenv("https_proxy")
    assert env_proxy("https://app.zyntrohq.com/x") == (None, None)


@pytest.mark.parametrize("answer", [b"", b"\x05\xff"], ids=["closes", "not HTTP (a SOCKS proxy)"])
def test_a_proxy_that_never_opens_the_tunnel_leaves_rows_failed_not_unknown(
    sandbox, proxy, api_cert, write_input, tmp_path, answer
):
    """A proxy that closed on CONNECT or answered what is not HTTP (a SOCKS proxy named as
    http://): every row was `unknown` "after the request was sent", and ten stopped the run (exit
    3), though nothing could have reached the API (found by a review, h7a)."""
    box = sandbox()
    broken = proxy(answer=answer)
    rows = write_input("a.csv", make_rows(4))
    out = tmp_path / "r.csv"
    done = _run_through(box, f"http://127.0.0.1:{broken.port}", api_cert, rows, out, tmp_path, "--max-attempts", "2")
    frame = pl.read_csv(out, infer_schema=False)
    assert done.code == 1 and set(frame["status"]) == {"failed"}, done.stderr
    assert set(frame["error_code"]) == {"CONNECT_ERROR"} and box.stats()["requests"] == 0
    assert broken.refused == 8  # each row tried twice


@pytest.mark.parametrize(
    ("variables", "proxy_url"),
    [
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "http://proxy.corp:3128"),  # no scheme: http, as curl
        ({"ALL_PROXY": "http://all.corp:8080"}, "http://all.corp:8080"),
        ({"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"}, "http://a:1"),
        ({"http_proxy": "http://127.0.0.1:99999", "https_proxy": "http://p:3"}, "http://p:3"),  # another one broken
        ({"https_proxy": "  "}, None),
        ({"ALL_PROXY": "socks5://127.0.0.1:1080"}, None),  # for other tools: direct, as before (review h8a)
        ({"https_proxy": "http://proxy.corp"}, "http://proxy.corp:1080"),  # curl's port when none is named
    ],
)
def test_the_proxy_variable_is_read_as_curl_reads_it(monkeypatch, variables, proxy_url):
    """`HTTPS_PROXY=proxy.corp:3128` failed every request with InvalidURL, recorded as a lost
    connection (`unknown`); a broken HTTP_PROXY crashed an https run (exit 4): aiohttp parsed
    every *_proxy variable (found by a review, h7a)."""
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    url, _ = env_proxy("https://app.zyntrohq.com/apis/v2/public/crm/addSIRequest")
    assert (str(url) if url is not None else None) == proxy_url


@pytest.mark.parametrize(
    "value", ["http://u:pw-s3cret@127.0.0.1:99999", "http://[::1:3128", "socks5://u:pw-s3cret@h:1080"]
)
def test_a_proxy_variable_that_names_no_usable_proxy_stops_the_run_without_repeating_it(
    monkeypatch, write_input, tmp_path, value
):
    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", value)
    with pytest.raises(ConfigError, match="the proxy variable HTTPS_PROXY") as info:
        env_proxy("https://app.zyntrohq.com/apis/v2/public/crm/addSIRequest")
    assert "s3cret" not in str(info.value)
    rows = write_input("a.csv", make_rows(2))
    base = "https://app.zyntrohq.com/apis/v2/public/crm"
    done = run_cli("run", str(rows), "--base-url", base, "--results", str(tmp_path / "r.csv"),
                   env={**CREDENTIAL_ENV, "HTTPS_PROXY": value})  # fmt: skip
    assert done.code == 2 and "the proxy variable HTTPS_PROXY" in done.stderr and "s3cret" not in done.stderr
