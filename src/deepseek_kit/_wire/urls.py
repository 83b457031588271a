"""Where DeepSeek serves what: the base URL of the /beta endpoints derived from an API base URL.

Prefix completion and FIM are served under /beta
(https://api-docs.deepseek.com/guides/chat_prefix_completion, https://api-docs.deepseek.com/guides/fim_completion);
the rest under the root or /v1. The client and the router both derive the /beta URL the same way.
"""

from __future__ import annotations

__all__ = ["beta_url"]


def beta_url(base_url: str) -> str:
    """`https://api.deepseek.com/v1` -> `https://api.deepseek.com/beta` (a trailing /v1 or /beta is
    replaced, anything else gets /beta appended)."""
    for suffix in ("/v1", "/beta"):
        if base_url.endswith(suffix):
            base_url = base_url[: -len(suffix)]
            break
    return base_url + "/beta"
