"""HTTP delivery for the notify module: one POST, one retry on a 5xx answer or a connection error.

urllib from the standard library only (targets have no requests). The URL is a secret (webhook
tokens live in its path): it is never put in an error message; callers report redact_url(url).
"""

import re
import socket
import time

from urllib.error import HTTPError, URLError
from urllib.parse import parse_qsl, unquote, urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

USER_AGENT = "songmetrix.backup-notify/1"
RETRY_DELAY = 1.0  # seconds before the single retry
_READ_LIMIT = 4096  # of a response body, for error messages only


class _NoRedirect(HTTPRedirectHandler):
    """Never follow a redirect: a POST would turn into a GET without body on another URL."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _opener():
    return build_opener(_NoRedirect())


def url_secrets(url):
    """What of a URL may be its secret and must not appear in a message: the URL, its path and query, each
    path segment and query value of 16 characters or more, or of 8 or more unless it is a lower-case word
    ("services", "webhooks"), as given and percent-decoded, and the password of ``user:password@``.

    A receiver's error page may repeat the request line ("Cannot POST /hooks/<token>"), or only its end.
    """
    text = str(url or "")
    found = {text}
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return found
    rest = parts.path + ("?" + parts.query if parts.query else "")
    if rest not in ("", "/"):
        found.add(rest)
    pieces = parts.path.split("/") + [value for _name, value in parse_qsl(parts.query, keep_blank_values=True)]
    for piece in pieces:
        for form in (piece, unquote(piece)):
            if len(form) >= 16 or (len(form) >= 8 and not re.match(r"^[a-z-]+$", form)):
                found.add(form)
    if password:
        found.add(password)
    return found


def _short(text, secrets):
    text = (text or "").strip().replace("\r", " ").replace("\n", " ")
    # Longest first: a URL holds its path, which holds its token.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "…")
    return text[:200]


def post(url, body, content_type, timeout, headers=None, secrets=(), retry_delay=RETRY_DELAY):
    """POST ``body`` (bytes) to ``url``; returns a dict: status_code (int or None), error (str or None),
    attempts (int), retried_because (str or None).

    Retries once after a 5xx answer, a refused/reset connection or a connect timeout. A timeout
    while waiting for the answer is not retried: the receiver may have taken the message.
    """
    secrets = sorted(url_secrets(url)) + [s for s in secrets if s]
    result = {"status_code": None, "error": None, "attempts": 0}
    for attempt in (1, 2):
        result["attempts"] = attempt
        retry = False
        request = Request(url, data=body, method="POST")
        request.add_header("Content-Type", content_type)
        request.add_header("User-Agent", USER_AGENT)
        for name, value in (headers or {}).items():
            request.add_header(str(name), str(value))
        try:
            response = _opener().open(request, timeout=timeout)
            try:
                response.read(_READ_LIMIT)
            finally:
                response.close()
            result.update(status_code=response.status, error=None)
            return result
        except HTTPError as exc:
            text = ""
            try:
                text = exc.read(_READ_LIMIT).decode("utf-8", errors="replace")
            except Exception:
                pass
            result["status_code"] = exc.code
            detail = (": " + _short(text, secrets)) if text.strip() else ""
            result["error"] = "HTTP %d %s%s" % (exc.code, _short(exc.reason and str(exc.reason), secrets), detail)
            retry = exc.code >= 500
        except URLError as exc:
            reason = exc.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                result["error"] = "connect timeout after %ss" % timeout
            else:
                result["error"] = "connection failed: %s" % _short(str(reason), secrets)
            result["status_code"] = None
            retry = True
        except (socket.timeout, TimeoutError):
            result.update(status_code=None, error="no answer within %ss (timeout)" % timeout)
            retry = False
        except (OSError, ValueError) as exc:  # reset connections, bad status lines, invalid URLs
            result.update(status_code=None, error="%s: %s" % (type(exc).__name__, _short(str(exc), secrets)))
            retry = isinstance(exc, (ConnectionError, OSError)) and not isinstance(exc, ValueError)
        if not retry or attempt == 2:
            break
        result["retried_because"] = result["error"]
        time.sleep(retry_delay)
    return result
