"""Settings resolution, public: where `AsyncClient()` and `dsk` find the key, the URL and the config file.

Precedence, highest first: explicit arguments, then the environment (DEEPSEEK_API_KEY,
DEEPSEEK_BASE_URL, DSK_PROFILE), then the config file, then the defaults. The state directory is
DSK_HOME (default ~/.deepseek-kit); the config file is DSK_CONFIG (default $DSK_HOME/config.toml),
TOML whose top-level keys are the defaults and whose `[profiles.NAME]` tables override them:

    api_key = "sk-..."            # or api_key_env = "MY_KEY_VAR"
    base_url = "https://api.deepseek.com"
    [profiles.local]
    base_url = "http://127.0.0.1:8000"

    from deepseek_kit.config import config_path, load_config, resolve
    key, url, extra = resolve(None, None, profile="local")

Every problem with a file or a value is a `UsageError` naming the key and what to change. The
functions live in a private module shared with the client; this module is their public name.
"""

from __future__ import annotations

from ._settings import DEFAULT_BASE_URL, config_path, config_table, home_dir, load_config, resolve

__all__ = ["DEFAULT_BASE_URL", "config_path", "config_table", "home_dir", "load_config", "resolve"]
