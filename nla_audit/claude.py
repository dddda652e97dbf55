"""One Claude client for every direct Anthropic call in nla_audit (the SAE labeller, the SFT teacher).

Why one: two copies of the same loop (client, semaphore, retries, cache) drift, and a fix to one (say, naming
a network outage instead of blaming the key) never reaches the other. This module owns:

* **client creation**: the key comes from ``ANTHROPIC_API_KEY`` in the environment only, read by the SDK
  itself; it is never passed around, logged, hashed or written. A missing package or key is one
  ``InputError`` line that says how to fix it (``require_claude``);
* **bounded concurrency** (an ``asyncio.Semaphore``) and **retries with exponential backoff** on the errors
  that can pass: rate limits (429), overload and server errors (5xx, 529), request timeouts (408), conflicts
  (409) and network failures. The SDK's own retries are switched off so the two never stack;
* **one clear error** for the rest: a non-retryable API error (bad key, unknown model, bad request) is an
  ``InputError`` naming the error and what to check; retries that run out name the cause, and a network
  failure is called a network failure (not a key problem);
* **an on-disk JSON cache** keyed by the sha256 of (model, system, prompt, params), written atomically (temp
  file, then rename), so an interrupted run loses nothing and a rerun costs nothing. An entry holds the reply
  text and the model name only.

What breaks if this is wrong: a key in a cache file that gets shared; a rerun that pays again; an offline run
that loads every model and then blames the key. Langchain's ``ChatAnthropic`` (the auditor in ``agents/`` and
``evals/root_cause``) and inspect's ``anthropic/…`` grader role keep their own clients: langgraph and inspect
need their own model objects; they share ``check_reachable`` and the key-from-environment rule only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nla_audit.errors import InputError

KEY_ENV = "ANTHROPIC_API_KEY"
DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_API_URL = "https://api.anthropic.com"
RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every status >= 500 (overloaded is 529)


@dataclass(frozen=True)
class ClaudeConfig:
    """One kind of request: every field except the last four is part of the cache key."""

    model: str = DEFAULT_MODEL
    max_tokens: int = 300
    temperature: float | None = 1.0  # None: not sent (some models take no sampling controls)
    system: str | None = None  # a system prompt, or none
    concurrency: int = 8  # requests in flight at once
    max_retries: int = 6  # retries after the first attempt, for retryable errors only
    backoff_s: float = 1.0  # first wait; doubles per retry (plus jitter), capped at backoff_cap_s
    backoff_cap_s: float = 60.0

    def __post_init__(self) -> None:
        for name, low in (("max_tokens", 1), ("concurrency", 1), ("max_retries", 0)):
            if int(getattr(self, name)) < low:
                raise InputError(f"Claude {name} is {getattr(self, name)}", expected=f"an integer >= {low}")
        if self.backoff_s < 0 or self.backoff_cap_s < 0:
            raise InputError("Claude backoff is negative", expected="seconds >= 0")

    def params(self) -> dict[str, Any]:
        """The sampling parameters sent with (and hashed into the key of) every request."""
        return {"max_tokens": self.max_tokens, "temperature": self.temperature}

    def request(self, prompt: str) -> dict[str, Any]:
        """``messages.create`` keyword arguments. The temperature travels in ``extra_body``: the typed
        ``create()`` of the anthropic SDK in use (2.15) has no ``temperature`` argument (passing it is a
        ``TypeError`` before any request), while the API still takes it for models that allow sampling control."""
        request: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens,
                                   "messages": [{"role": "user", "content": prompt}]}
        if self.system is not None:
            request["system"] = self.system
        if self.temperature is not None:
            request["extra_body"] = {"temperature": self.temperature}
        return request

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry ``attempt + 1``: exponential, jittered, capped."""
        return min(self.backoff_cap_s, self.backoff_s * (2 ** attempt + random.random()))


# ------------------------------------------------------------------------------------------- prerequisites
def require_claude(alternative: str | None = None) -> None:
    """Fail with one line when the ``anthropic`` package or the key is missing.

    Args:
        alternative: what the user can do instead, appended to the fix (e.g. "use --teacher offline").

    Raises:
        InputError: the package is not installed, or ``ANTHROPIC_API_KEY`` is unset or empty.
    """
    tail = f", or {alternative}" if alternative else ""
    try:
        import anthropic  # noqa: F401
    except ImportError:
        raise InputError("Claude needs the anthropic package, which is not installed",
                         fix=f"pip install 'nla_audit[agents]'{tail}") from None
    if not os.environ.get(KEY_ENV, "").strip():
        raise InputError(f"Claude needs {KEY_ENV} in the environment, which is not set",
                         fix=f"export {KEY_ENV}=...{tail}")


def check_reachable(url: str | None = None, timeout: float = 3.0, alternative: str | None = None) -> None:
    """A TCP connection to the API's host (``ANTHROPIC_BASE_URL`` or the public API), so a run without a network
    says so in one line before it loads any model, instead of retrying and then blaming the key.

    Raises:
        InputError: the host cannot be reached.
    """
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # the SDK goes through the proxy; a direct connection test would refuse a network that works
    u = urlparse(url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_API_URL)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=timeout).close()
    except OSError as exc:
        tail = f", or {alternative}" if alternative else ""
        raise InputError(f"cannot reach the Anthropic API at {u.hostname}:{port} ({exc.strerror or exc})",
                         expected="a network connection to the API",
                         fix=f"check the network (or ANTHROPIC_BASE_URL){tail}") from None


# ------------------------------------------------------------------------------------------- errors
def is_network_error(exc: BaseException) -> bool:
    """A connection failure or timeout (the SDK's, or a plain ``OSError`` one from a stub client)."""
    return isinstance(exc, (*_sdk_errors("APIConnectionError"), ConnectionError, TimeoutError))


def is_api_error(exc: BaseException) -> bool:
    """An answer from the API (any HTTP status) or any SDK error; anything else is a bug and propagates as is."""
    return isinstance(getattr(exc, "status_code", None), int) or isinstance(exc, _sdk_errors("APIError"))


def is_retryable(exc: BaseException) -> bool:
    """Network failures, and HTTP statuses that can pass: 408, 409, 429 and every 5xx (overloaded is 529)."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in RETRYABLE_STATUS or status >= 500
    return is_network_error(exc)


def _sdk_errors(name: str) -> tuple[type[BaseException], ...]:
    try:
        import anthropic
    except ImportError:
        return ()
    return (getattr(anthropic, name),)


def _describe(exc: BaseException) -> str:
    """``Name: first line`` of an error, with the key blanked should an error ever echo it."""
    first = (str(exc).strip().splitlines() or [""])[0]
    key = os.environ.get(KEY_ENV, "").strip()
    first = (first.replace(key, "***") if key else first)[:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def final_error(exc: BaseException, model: str, attempts: int) -> InputError:
    """The one line a failed request ends in: the network named as such, rate limits as such, else the API's
    own complaint with what to check."""
    what = _describe(exc)
    if is_network_error(exc):
        return InputError(f"cannot reach the Anthropic API after {attempts} attempt(s) ({what})",
                          expected="a network connection to the API",
                          fix="check the network connection (or ANTHROPIC_BASE_URL); finished requests are cached")
    if is_retryable(exc):
        return InputError(f"the Anthropic API stayed busy after {attempts} attempt(s) ({what})",
                          fix="wait and rerun (finished requests are cached), or lower the concurrency")
    return InputError(f"the Claude request failed ({what})",
                      fix=f"check {KEY_ENV} and the model name ({model!r})")


# ------------------------------------------------------------------------------------------- cache
def cache_key(model: str, system: str | None, prompt: str, params: dict[str, Any]) -> str:
    """sha256 over the request's content: two requests share an entry only if the API would see the same."""
    blob = json.dumps([model, system, prompt, params], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplyCache:
    """One JSON file per request, ``<key>.json`` = ``{"text": ..., "model": ...}``; nothing else is stored."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> str | None:
        """The cached reply text, or None (missing or unreadable: a torn file is simply asked again)."""
        try:
            return str(json.loads((self.folder / f"{key}.json").read_text(encoding="utf-8"))["text"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, text: str, model: str) -> None:
        """Write atomically: a temp file carrying this process's id, then a rename."""
        path = self.folder / f"{key}.json"
        tmp = self.folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"text": text, "model": model}, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- client
class ClaudeClient:
    """Bounded, retried, cached ``messages.create`` calls; ``client`` lets tests pass a stub async client."""

    def __init__(self, config: ClaudeConfig, cache_dir: str | Path | None = None, client: Any = None,
                 alternative: str | None = None) -> None:
        if client is None:
            require_claude(alternative)
        self.config, self.client = config, client
        self.cache = ReplyCache(cache_dir) if cache_dir is not None else None

    def complete(self, prompt: str) -> str:
        """One reply text.

        Raises:
            InputError: a non-retryable API error, or retries spent (a network failure is named as such).
        """
        (text,) = self.complete_many([prompt], drop_failed=False)
        assert text is not None  # drop_failed=False raises instead of returning None
        return text

    def complete_many(self, prompts: Sequence[str], drop_failed: bool = True) -> list[str | None]:
        """One reply text per prompt, in order, ``concurrency`` requests at a time.

        Args:
            prompts: user messages, one request each.
            drop_failed: a prompt whose retries run out gives None (callers drop it) instead of raising. Even
                then, when every request that went to the API failed, the last failure is raised: that is an
                outage (no network, a spent quota), not a dropped item.

        Raises:
            InputError: a non-retryable API error; retries spent (see ``drop_failed``).
        """
        if not prompts:
            return []
        outcomes = asyncio.run(self._all(list(prompts)))
        failures = [o.error for o in outcomes if o.error is not None]
        asked = sum(not o.cached for o in outcomes)
        if failures and (not drop_failed or len(failures) == asked):
            raise failures[-1]
        return [o.text for o in outcomes]

    async def _all(self, prompts: list[str]) -> list[_Outcome]:
        client, own = self.client, self.client is None
        if own:
            import anthropic

            client = anthropic.AsyncAnthropic(max_retries=0)  # the key: from the environment, read by the SDK
        sem = asyncio.Semaphore(self.config.concurrency)
        tasks = [asyncio.ensure_future(self._one(client, sem, p)) for p in prompts]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:  # one fatal error: stop the siblings rather than let them run on
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        finally:
            if own and hasattr(client, "close"):
                await client.close()

    def _key(self, prompt: str) -> str:
        c = self.config
        return cache_key(c.model, c.system, prompt, c.params())

    async def _one(self, client: Any, sem: asyncio.Semaphore, prompt: str) -> _Outcome:
        """A cache hit, a fresh reply (then cached), or the final error once retries are spent."""
        key = self._key(prompt)
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is not None:
            return _Outcome(hit, cached=True)
        c = self.config
        request = c.request(prompt)
        async with sem:
            for attempt in range(c.max_retries + 1):
                try:
                    msg = await client.messages.create(**request)
                    break
                except Exception as exc:
                    if not is_retryable(exc):
                        if is_api_error(exc):
                            raise final_error(exc, c.model, attempt + 1) from None
                        raise
                    if attempt == c.max_retries:
                        return _Outcome(None, error=final_error(exc, c.model, attempt + 1))
                    await asyncio.sleep(c.delay(attempt))
        text = "".join(getattr(b, "text", "") for b in msg.content)
        if self.cache is not None:
            self.cache.put(key, text, c.model)
        return _Outcome(text)


@dataclass(frozen=True)
class _Outcome:
    """One prompt's result: its text, whether it came from the cache, or the error its retries ended in."""

    text: str | None
    cached: bool = False
    error: InputError | None = None
