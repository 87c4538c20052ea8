"""The double-submit CSRF token bound to its session, the same-site checks and the cookie
names by scheme."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from api.accounts.csrf import (
    ANONYMOUS,
    CSRF_COOKIE,
    CSRF_HEADER,
    check_csrf,
    check_same_site,
    csrf_cookie_name,
    is_valid_csrf_token,
    new_csrf_token,
)
from api.errors import CrossSiteRequestError, CsrfError

SECRET = "a" * 40
SESSION = "5" * 64  # a stored token hash
OTHER_SESSION = "6" * 64


def _request(
    method: str,
    cookie: str | None = None,
    header: str | None = None,
    *,
    scheme: str = "http",
    cookie_name: str = CSRF_COOKIE,
    extra: dict[str, str] | None = None,
) -> Request:
    headers = [(b"host", b"gate.example:8000")]
    if cookie is not None:
        headers.append((b"cookie", f"{cookie_name}={cookie}".encode()))
    if header is not None:
        headers.append((CSRF_HEADER.encode(), header.encode()))
    for key, value in (extra or {}).items():
        headers.append((key.lower().encode(), value.encode()))
    scope = {"type": "http", "method": method, "headers": headers, "path": "/", "scheme": scheme}
    return Request(scope)


def test_tokens_are_signed_with_the_secret_for_one_session() -> None:
    token = new_csrf_token(SECRET, SESSION)
    assert is_valid_csrf_token(token, SECRET, SESSION)
    assert not is_valid_csrf_token(token, "b" * 40, SESSION)
    assert not is_valid_csrf_token(token, SECRET, OTHER_SESSION)
    assert not is_valid_csrf_token(token, SECRET, ANONYMOUS)
    nonce, _, signature = token.partition(".")
    assert not is_valid_csrf_token(nonce + "x." + signature, SECRET, SESSION)
    assert not is_valid_csrf_token(nonce, SECRET, SESSION)
    assert new_csrf_token(SECRET, SESSION) != token
    anonymous = new_csrf_token(SECRET)
    assert is_valid_csrf_token(anonymous, SECRET) and not is_valid_csrf_token(
        anonymous, SECRET, SESSION
    )


def test_check_accepts_a_matching_header_for_the_session_and_safe_methods() -> None:
    token = new_csrf_token(SECRET, SESSION)
    check_csrf(_request("POST", token, token), SECRET, bound_to=SESSION)
    check_csrf(_request("GET"), SECRET, bound_to=SESSION)


@pytest.mark.parametrize(
    ("cookie", "header"),
    [(None, "t"), ("t", None), ("t", "u"), ("forged.value", "forged.value")],
    ids=["no-cookie", "no-header", "mismatch", "unsigned"],
)
def test_check_refuses_writes_without_a_valid_pair(cookie: str | None, header: str | None) -> None:
    valid = new_csrf_token(SECRET, SESSION)
    cookie = valid if cookie == "t" else cookie
    header = valid if header == "t" else header
    with pytest.raises(CsrfError):
        check_csrf(_request("DELETE", cookie, header), SECRET, bound_to=SESSION)


@pytest.mark.parametrize("issued_for", [OTHER_SESSION, ANONYMOUS], ids=["other-session", "anon"])
def test_a_token_of_another_session_or_an_anonymous_one_is_refused(issued_for: str) -> None:
    """Planted in both the cookie and the header, a valid token for another session (or from an
    anonymous GET /csrf) does not authorise this session's writes."""
    planted = new_csrf_token(SECRET, issued_for)
    with pytest.raises(CsrfError):
        check_csrf(_request("POST", planted, planted), SECRET, bound_to=SESSION)


def test_over_https_the_cookie_is_read_under_its_host_prefixed_name_only() -> None:
    token = new_csrf_token(SECRET, SESSION)
    https = _request("POST", token, token, scheme="https", cookie_name="__Host-csrftoken")
    assert csrf_cookie_name(https) == "__Host-csrftoken"
    check_csrf(https, SECRET, bound_to=SESSION)
    plain_name = _request("POST", token, token, scheme="https")
    with pytest.raises(CsrfError):
        check_csrf(plain_name, SECRET, bound_to=SESSION)
    assert csrf_cookie_name(_request("POST")) == CSRF_COOKIE


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://gate.example:8000"},
        {"Origin": "HTTPS://Gate.Example:8000", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://app.example"},  # in the CORS origins
        {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},  # typed in the address bar
    ],
    ids=["no-headers", "same-origin", "case-insensitive", "cors", "cors-cross-site", "sfs", "none"],
)
def test_same_site_and_allowed_origins_pass(headers: dict[str, str]) -> None:
    check_same_site(_request("POST", extra=headers), ["https://app.example"])


def test_default_ports_are_the_same_origin() -> None:
    request = Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/",
            "scheme": "https",
            "headers": [(b"host", b"gate.example:443"), (b"origin", b"https://gate.example")],
        }
    )
    check_same_site(request, [])


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({"Sec-Fetch-Site": "cross-site"}, "Sec-Fetch-Site: cross-site"),
        ({"Origin": "https://evil.example"}, "'https://evil.example'"),
        ({"Origin": "http://gate.example:9000"}, "'http://gate.example:9000'"),
        ({"Origin": "null"}, "'null'"),
        ({"Origin": "https://evil.example", "Sec-Fetch-Site": "same-site"}, "evil.example"),
    ],
    ids=["sec-fetch-site", "origin", "other-port", "null-origin", "same-site-subdomain"],
)
def test_cross_site_requests_are_refused(headers: dict[str, str], detail: str) -> None:
    with pytest.raises(CrossSiteRequestError) as refused:
        check_same_site(_request("POST", extra=headers), ["https://app.example"])
    assert refused.value.status_code == 403
    assert "Cross-site request refused" in refused.value.detail
    assert detail in refused.value.detail
