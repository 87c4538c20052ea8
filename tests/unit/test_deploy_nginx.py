"""deploy/nginx/nginx.conf, the reverse proxy in front of the API (compose and the k8s sidecar):
parsed with nginx's grammar (crossplane), each limit checked against the API setting it backs
(header size and time, body size and time, keep-alive, stream idle time, request deadline, stop
budget), the per-client caps, WebSocket passing, forwarded headers, logs without query strings and
the proxy's own refusals in the API's JSON shape; then ``nginx -t`` where nginx is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from api.config import Settings
from api.inference.routes.detect import MULTIPART_OVERHEAD
from api.platform.timeouts import HEADER_TIMEOUT_S, KEEPALIVE_S, MAX_HEADER_BYTES, STOP_TIMEOUT_S
from tests.helpers.deploy_files import NginxDirective, nginx_bytes, nginx_seconds, parse_nginx
from tests.stack import PROJECT_ROOT

NGINX_DIR = PROJECT_ROOT / "deploy" / "nginx"
NGINX_CONF = NGINX_DIR / "nginx.conf"
UPSTREAM = "http://tritongate_api"
CREDENTIAL_ROUTES = ("/register", "/token", "/login")
STREAM_ROUTES = ("/object-detection", "/ws/detect")
# What the proxy adds to a request head on its way to the API (X-Forwarded-*, Connection, ...).
ADDED_HEADER_BYTES = 1024


@pytest.fixture(scope="module")
def main() -> NginxDirective:
    return parse_nginx(NGINX_CONF)


@pytest.fixture(scope="module")
def http(main: NginxDirective) -> NginxDirective:
    return main.one("http")


@pytest.fixture(scope="module")
def server(http: NginxDirective) -> NginxDirective:
    """The server that proxies to the API (the other one answers the proxy's health check)."""
    (found,) = [
        server
        for server in http.all("server")
        if any(
            location.get("proxy_pass") is not None
            and location.one("proxy_pass").args == (UPSTREAM,)
            for location in server.all("location")
        )
    ]
    return found


@pytest.fixture(scope="module")
def defaults() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def _value(block: NginxDirective, name: str) -> str:
    (value,) = block.one(name).args
    return value


def _proxy_headers(block: NginxDirective) -> dict[str, str]:
    return {header.args[0].lower(): header.args[1] for header in block.all("proxy_set_header")}


def test_the_request_head_is_capped_below_the_api_cap_and_timed_like_it(
    http: NginxDirective, defaults: Settings
) -> None:
    assert defaults.max_header_bytes == MAX_HEADER_BYTES
    first = nginx_bytes(_value(http, "client_header_buffer_size"))
    count, size = http.one("large_client_header_buffers").args
    # Everything nginx accepts, plus what it adds, still fits under the API's own cap: the proxy
    # refuses first, and never forwards a head the API would refuse.
    assert first + int(count) * nginx_bytes(size) + ADDED_HEADER_BYTES <= MAX_HEADER_BYTES
    assert nginx_bytes(size) >= 8 * 1024, "a bearer token or a session cookie must fit on a line"
    assert nginx_seconds(_value(http, "client_header_timeout")) <= HEADER_TIMEOUT_S
    assert defaults.header_timeout_s == HEADER_TIMEOUT_S


def test_the_body_cap_is_the_upload_limit_plus_the_multipart_overhead(
    http: NginxDirective, defaults: Settings
) -> None:
    limit = nginx_bytes(_value(http, "client_max_body_size"))
    assert limit == defaults.max_upload_bytes + MULTIPART_OVERHEAD == 10 * 1024 * 1024 + 16 * 1024
    assert limit >= defaults.max_body_bytes, "every JSON body the API takes passes the proxy"


def test_slow_bodies_are_absorbed_by_the_proxy(
    http: NginxDirective, server: NginxDirective, defaults: Settings
) -> None:
    # nginx times the gap between two reads; the API times the whole body from the moment it
    # gets it, which, buffered here, is the moment the body is complete.
    assert nginx_seconds(_value(http, "client_body_timeout")) < defaults.body_timeout_s
    assert _value(server, "proxy_request_buffering") == "on"
    for location in server.all("location"):
        assert location.get("proxy_request_buffering") is None, location.args


def test_idle_and_stalled_client_connections_are_closed(http: NginxDirective) -> None:
    assert 0 < nginx_seconds(_value(http, "send_timeout")) <= 60
    assert 0 < nginx_seconds(_value(http, "keepalive_timeout")) <= 60
    assert _value(http, "reset_timedout_connection") == "on"


def test_connections_are_capped_per_client_address(http: NginxDirective) -> None:
    key, zone = http.one("limit_conn_zone").args
    assert key == "$binary_remote_addr"
    name = zone.removeprefix("zone=").split(":")[0]
    (limit,) = [d for d in http.all("limit_conn") if d.args[0] == name]
    assert 8 <= int(limit.args[1]) <= 256
    assert _value(http, "limit_conn_status") == "429"


def test_credential_posts_are_rate_limited_per_client_address(
    http: NginxDirective, server: NginxDirective
) -> None:
    key, zone, rate = http.one("limit_req_zone").args
    (by_method,) = [m for m in http.all("map") if m.args == ("$request_method", key)]
    entries = {entry.name: entry.args for entry in by_method.block or ()}
    assert entries == {"POST": ("$binary_remote_addr",), "default": ("",)}, "only POSTs count"
    name = zone.removeprefix("zone=").split(":")[0]
    assert re.fullmatch(r"rate=\d+r/m", rate)
    for path in CREDENTIAL_ROUTES:
        location = server.child("location", "=", path)
        assert location.one("limit_req").args[0] == f"zone={name}", path
        assert _value(location, "proxy_pass") == UPSTREAM
    assert _value(http, "limit_req_status") == "429"


def test_streams_are_upgraded_unbuffered_and_outlive_the_api_idle_timeout(
    http: NginxDirective, server: NginxDirective, defaults: Settings
) -> None:
    from fastapi.routing import APIWebSocketRoute

    from api.inference.routes.stream import router  # included without a prefix (api/main.py)

    websocket_paths = {
        route.path for route in router.routes if isinstance(route, APIWebSocketRoute)
    }
    assert websocket_paths == set(STREAM_ROUTES)
    headers = _proxy_headers(server)
    upgrade_maps = {m.args[1]: m for m in http.all("map") if m.args[0] == "$http_upgrade"}
    assert set(upgrade_maps) == {headers["upgrade"], headers["connection"]}
    assert _value(server, "proxy_http_version") == "1.1"
    for path in STREAM_ROUTES:
        location = server.child("location", "=", path)
        assert _value(location, "proxy_pass") == UPSTREAM
        # No proxy_set_header of its own: it inherits the server's (Upgrade included).
        assert location.all("proxy_set_header") == [], path
        assert _value(location, "proxy_buffering") == "off", path
        for name in ("proxy_read_timeout", "proxy_send_timeout"):
            assert nginx_seconds(_value(location, name)) > defaults.stream_idle_timeout_s, path


def test_the_proxy_waits_longer_than_the_api_request_deadline(
    server: NginxDirective, defaults: Settings
) -> None:
    assert nginx_seconds(_value(server, "proxy_read_timeout")) > defaults.request_timeout_s
    assert nginx_seconds(_value(server, "proxy_connect_timeout")) <= 10


def test_upstream_connections_are_dropped_before_the_api_drops_them(
    http: NginxDirective,
) -> None:
    upstream = http.child("upstream", "tritongate_api")
    assert nginx_seconds(_value(upstream, "keepalive_timeout")) < KEEPALIVE_S
    assert int(_value(upstream, "keepalive")) > 0


def test_forwarded_headers_are_set_by_the_proxy_not_taken_from_the_client(
    server: NginxDirective,
) -> None:
    headers = _proxy_headers(server)
    # $remote_addr replaces whatever X-Forwarded-For the client sent ($proxy_add_x_forwarded_for
    # would append to it).
    assert headers["x-forwarded-for"] == "$remote_addr"
    assert headers["x-forwarded-proto"] == "$scheme"
    assert headers["host"] == "$http_host"


def test_access_logs_carry_no_query_string(http: NginxDirective) -> None:
    (log_format,) = http.all("log_format")
    name, escape, *parts = log_format.args
    assert escape == "escape=json"
    text = "".join(parts)
    for variable in ("$request ", "$request_uri", "$args", "$query_string", "$arg_"):
        assert variable not in text + " ", variable
    assert "$uri" in text
    assert http.one("access_log").args[1] == name


def test_the_proxy_refusals_are_json_details(server: NginxDirective) -> None:
    pages = {}
    for page in server.all("error_page"):
        *codes, target = page.args
        changed = [code for code in codes if code.startswith("=")]
        pages.update({code: (changed, target) for code in codes if code not in changed})
    expected = {"413": 413, "494": 431, "429": 429, "502": 503, "504": 503}
    for code, status in expected.items():
        changed, target = pages[code]
        location = server.child("location", target)
        assert _value(location, "default_type") == "application/json"
        returned, body = location.one("return").args
        assert int(returned) == status and changed in ([], [f"={status}"]), code
        assert set(json.loads(body.removesuffix("\\n"))) == {"detail"}, code
        if status in (429, 503):
            assert location.one("add_header").args == ("Retry-After", "1", "always"), code


def test_a_graceful_stop_fits_the_api_stop_budget(main: NginxDirective) -> None:
    assert nginx_seconds(_value(main, "worker_shutdown_timeout")) < STOP_TIMEOUT_S
    assert _value(main, "daemon") == "off", "the container's main process"


def test_everything_it_writes_is_under_tmp(main: NginxDirective, http: NginxDirective) -> None:
    assert _value(main, "pid").startswith("/tmp/")
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert _value(http, f"{name}_temp_path").startswith("/tmp/"), name
    assert main.get("user") is None, "runs as the container's (non-root) user"


def test_the_health_server_answers_without_the_api(http: NginxDirective) -> None:
    (health,) = [
        s for s in http.all("server") if s.get("listen") and s.one("listen").args == ("8081",)
    ]
    location = health.child("location", "=", "/healthz")
    assert location.one("return").args[0] == "200"
    assert not any(loc.get("proxy_pass") for loc in health.all("location"))


def test_the_real_ip_example_parses(tmp_path: Path) -> None:
    copy = tmp_path / "real-ip.conf"
    copy.write_text("http {\n" + (NGINX_DIR / "real-ip.conf.example").read_text() + "}\n")
    http = parse_nginx(copy).one("http")
    assert _value(http, "real_ip_header") == "X-Forwarded-For"
    assert _value(http, "real_ip_recursive") == "on"


def _local_copy(tmp_path: Path, port: int) -> Path:
    """nginx.conf with its /tmp paths in tmp_path and the upstream `api` as 127.0.0.1."""
    text = NGINX_CONF.read_text()
    text, count = re.subn(r"server api:(\d+);", f"server 127.0.0.1:{port};", text)
    assert count == 1
    copy = tmp_path / "nginx.conf"
    copy.write_text(text.replace("/tmp/", f"{tmp_path}/"))
    return copy


def test_nginx_accepts_the_configuration(tmp_path: Path) -> None:
    nginx = shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin")
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    for extra in (None, NGINX_DIR / "real-ip.conf.example"):
        config = _local_copy(tmp_path, 8000)
        if extra is not None:
            shutil.copy(extra, tmp_path / "real-ip.conf")
        result = subprocess.run(
            [nginx, "-t", "-q", "-c", str(config), "-p", f"{tmp_path}/"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
