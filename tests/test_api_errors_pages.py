"""Non-JSON error bodies (proxies' HTML pages, plain text, nothing) read as their text once."""

from __future__ import annotations

from typing import Any

import pytest

from fanfare_async import APIError, RateLimitError, ServerError
from fanfare_async._api_errors import SNIPPET_CHARS, api_error_text, build_api_error
from fanfare_async.testing import Fault, MockFanfareServer

from .helpers import client_for


def fields(err: APIError) -> tuple[str | None, str | None, str | None, Any]:
    """The body's own fields on ``err``: error, message, code, details (``message`` typed
    ``str | None`` here: APIError still annotates it ``str``)."""
    return err.error, err.message, err.code, err.details


pytestmark = pytest.mark.anyio

URL = "https://admin.fanfare.io/api/audiences/groups/g1"

#: nginx 1.22 ends its error pages with comments that keep browsers from hiding them.
NGINX_PADDING = "<!-- a padding to disable MSIE and Chrome friendly error page -->\r\n" * 6


def nginx_page(line: str) -> bytes:
    """nginx's built-in error page for the status line ``line`` (e.g. ``502 Bad Gateway``)."""
    return (
        f"<html>\r\n<head><title>{line}</title></head>\r\n<body>\r\n"
        f"<center><h1>{line}</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n"
        f"</body>\r\n</html>\r\n{NGINX_PADDING}"
    ).encode()


CLOUDFLARE_502 = b"""<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<!--[if gt IE 8]><!--> <html class="no-js" lang="en-US"> <!--<![endif]-->
<head>
<title>admin.fanfare.io | 502: Bad gateway</title>
<meta charset="UTF-8" />
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/main.css" />
<script>(function(){window._cf_chl_opt={cvId: '3'};})();</script>
</head>
<body>
<div id="cf-wrapper">
  <div id="cf-error-details" class="p-0">
    <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8">
      <h1 class="inline-block sm:block sm:mb-2 font-light text-60 text-black-dark mr-2">
        <span class="inline-block">Bad gateway</span>
        <span class="code-label">Error code 502</span>
      </h1>
      <div>Visit <a href="https://www.cloudflare.com/5xx-error-landing">cloudflare.com</a>
        for more information.</div>
      <div class="mt-3">2024-05-14 09:21:03 UTC</div>
    </header>
    <div class="cf-error-footer cf-wrapper w-240 lg:w-full py-10 sm:py-4 sm:px-8 mx-auto">
      <p class="text-13">
        <span class="cf-footer-item sm:block sm:mb-1">Cloudflare Ray ID:
          <strong class="font-semibold">8835a1b2c3d4e5f6</strong></span>
      </p>
    </div>
  </div>
</div>
</body>
</html>
"""


def build(
    status: int, body: bytes, reason: str | None = None, content_type: str = "text/html"
) -> APIError:
    return build_api_error(
        status=status,
        reason=reason,
        headers={"Content-Type": content_type},
        body=body,
        method="GET",
        url=URL,
        retry_after=None,
    )


@pytest.mark.parametrize(
    ("status", "reason", "line"),
    [
        (502, "Bad Gateway", "502 Bad Gateway"),
        (503, "Service Unavailable", "503 Service Temporarily Unavailable"),
        (504, "Gateway Timeout", "504 Gateway Time-out"),
        (429, "Too Many Requests", "429 Too Many Requests"),
    ],
)
def test_nginx_page_reads_as_its_status_line_once(status: int, reason: str, line: str) -> None:
    """nginx's page (title, heading, signature) reads as its status line once, no signature."""
    err = build(status, nginx_page(line), reason)
    text = api_error_text(err)
    assert f"{status} {text}" == line
    assert "nginx" not in text
    assert fields(err) == (None, None, None, None)
    assert isinstance(err.body, str)
    assert err.body.startswith("<html>")


def test_nginx_429_page_is_a_rate_limit_error() -> None:
    """nginx's limit_req 429 page is a RateLimitError that reads "Too Many Requests"."""
    page = (
        b"<html><head><title>429 Too Many Requests</title></head><body><center><h1>429 Too Many"
        b" Requests</h1></center><hr><center>nginx/1.22.1</center></body></html>"
    )
    err = build(429, page, "Too Many Requests")
    assert isinstance(err, RateLimitError)
    assert api_error_text(err) == "Too Many Requests"


def test_cloudflare_page_reads_as_its_title() -> None:
    """A Cloudflare error page reads as its title: no script, Ray ID or footer text."""
    err = build(502, CLOUDFLARE_502, "Bad Gateway")
    assert api_error_text(err) == "admin.fanfare.io | 502: Bad gateway"
    assert fields(err)[1] is None


def test_page_without_title_reads_as_its_first_heading() -> None:
    """No <title>: the first heading, its inner tags and entities resolved."""
    page = b"<html><body><h2>Service <b>Unavailable</b> &amp; down</h2><h1>Other</h1></body></html>"
    assert api_error_text(build(503, page)) == "Service Unavailable & down"


def test_page_without_title_or_heading_reads_its_lines_once() -> None:
    """No title or heading: the visible lines, each once, without the leading status code."""
    page = (
        b"<html><body><p>502 Bad Gateway</p><p>Bad Gateway</p><div>upstream timed out</div>"
        b"<p>bad gateway</p><style>.x{color:red}</style><!-- node 7 --></body></html>"
    )
    assert api_error_text(build(502, page)) == "Bad Gateway upstream timed out"


def test_html_sent_as_text_plain_is_still_read_as_a_page() -> None:
    """A page is recognised by its tags even when the proxy labels it text/plain."""
    err = build(502, nginx_page("502 Bad Gateway"), content_type="text/plain")
    assert api_error_text(err) == "Bad Gateway"


def test_plain_text_body_is_its_text() -> None:
    """A plain-text body (Envoy's 503) reads as its text, angle brackets kept."""
    body = b"upstream connect error or disconnect/reset before headers. reset reason: <overflow>\n"
    err = build(503, body, "Service Unavailable", content_type="text/plain")
    expected = "upstream connect error or disconnect/reset before headers. reset reason: <overflow>"
    assert api_error_text(err) == expected
    assert fields(err)[1] is None
    assert err.body == body.decode()


def test_plain_text_status_line_is_not_repeated() -> None:
    """A text body that is the status line itself reads as the reason once."""
    err = build(502, b"502 Bad Gateway\n", "Bad Gateway", content_type="text/plain")
    assert api_error_text(err) == "Bad Gateway"


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [(503, "Service Unavailable", "Service Unavailable"), (504, None, "Gateway Timeout")],
)
def test_empty_body_reads_as_the_reason_phrase(
    status: int, reason: str | None, expected: str
) -> None:
    """An empty (or blank) body reads as the response's reason phrase, else the standard one."""
    for body in (b"", b" \r\n"):
        err = build(status, body, reason)
        assert api_error_text(err) == expected
        assert err.body is None
        assert fields(err)[1] is None


def test_empty_body_with_an_unknown_status() -> None:
    """No body, no reason, a status HTTP does not name: still some text."""
    assert api_error_text(build(599, b"")) == "HTTP error"


def test_huge_page_reads_as_its_title() -> None:
    """A page of a megabyte reads as its title; the body keeps the whole text."""
    page = (
        b"<html><head><title>503 Service Unavailable</title></head><body>" + b"<p>x</p>" * 125_000
    )
    err = build(503, page + b"</body></html>")
    assert api_error_text(err) == "Service Unavailable"
    assert isinstance(err.body, str)
    assert len(err.body) > 1_000_000


def test_huge_page_without_title_is_cut() -> None:
    """A huge page with no title or heading: its visible text, cut to SNIPPET_CHARS."""
    script = b"<script>" + b"var secret_state = 1;" * 1000 + b"</script>"
    lines = "".join(f"<div>line {i}</div>" for i in range(60_000)).encode()
    page = b"<html><body>" + script + lines + b"</body></html>"
    text = api_error_text(build(502, page))
    assert text.startswith("line 0 line 1 line 2")
    assert text.endswith("…")
    assert len(text) <= SNIPPET_CHARS + 1
    assert "secret_state" not in text


def test_huge_plain_text_is_cut() -> None:
    """A huge plain-text body reads as its first SNIPPET_CHARS characters."""
    text = api_error_text(build(500, b"error " * 100_000, content_type="text/plain"))
    assert text.startswith("error error")
    assert text.endswith("error…")
    assert len(text) <= SNIPPET_CHARS + 1


def test_page_cut_short_mid_title_still_reads() -> None:
    """A page truncated inside its title (the client keeps 64 KiB) falls back to its text."""
    err = build(502, b"<html><head><title>502 Bad Gat")
    assert api_error_text(err) == "Bad Gat"


def test_json_that_is_not_an_object_reads_as_its_text() -> None:
    """A JSON array or number body reads as its own text."""
    err = build(500, b'["boom", 1]', content_type="application/json")
    assert api_error_text(err) == '["boom", 1]'
    assert err.body == ["boom", 1]


async def test_nginx_page_through_the_client(server: MockFanfareServer) -> None:
    """A real 502 HTML response through the client: ServerError, message None, reads once."""
    group = server.group_ids[0]
    server.inject(Fault.error(502, body=nginx_page("502 Bad Gateway")), group_id=group)
    async with client_for(server, max_retries=0) as client:
        with pytest.raises(ServerError) as info:
            await client.get_group_audiences(group)
    err = info.value
    assert api_error_text(err) == "Bad Gateway"
    assert fields(err) == (None, None, None, None)
    assert err.request_id is not None
    assert server.secret_key not in api_error_text(err)
