"""Hugging Face hub IDs as backbones: what looks like an ID, and its folder in the local HF cache.

    looks_like_path("./ckpt"), looks_like_path("/models/x")   # True: a folder is meant
    hub_snapshot("BAAI/bge-small-en-v1.5")                      # <HF_HUB_CACHE>/models--BAAI--bge-small-en-v1.5/snapshots/<rev>
    resolve_hub_id("BAAI/bge-small-en-v1.5")                    # that folder; the ID itself to download; RqaError offline

The cache is read at call time from ``HF_HUB_CACHE``, else ``HF_HOME/hub``, else huggingface_hub's
default, and the revision is the one `refs/main` names, as transformers reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from rqakit.errors import RqaError

TRUE_VALUES = {"1", "on", "yes", "true"}


def looks_like_path(name: str) -> bool:
    """A string meant as a folder: starts with / . ~ (or the OS separator), or exists on disk."""
    return name.startswith(("/", ".", "~", os.sep)) or Path(name).exists()


def is_hub_id(name: str) -> bool:
    """"name" or "org/name" as the hub accepts it (letters, digits, - _ ., at most 96 characters)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def hub_cache_dir() -> Path:
    """The HF hub cache as the environment names it now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set: nothing may be downloaded."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(flag.strip().lower() in TRUE_VALUES for flag in flags) or bool(constants.HF_HUB_OFFLINE)


def hub_snapshot(repo_id: str) -> Path | None:
    """The cached snapshot folder of `repo_id` at refs/main when it holds config.json, else None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=str(hub_cache_dir()))
    return Path(found).parent if isinstance(found, str) else None


def resolve_hub_id(repo_id: str) -> str:
    """The cached snapshot folder of a hub ID; the ID itself (transformers downloads it) when it
    is not cached and downloads are allowed; RqaError when it is not cached and HF_HUB_OFFLINE is set."""
    snapshot = hub_snapshot(repo_id)
    if snapshot is not None:
        return str(snapshot)
    if hub_offline():
        raise RqaError(f"backbone {repo_id!r} (a Hugging Face hub ID) is not in the Hugging Face cache "
                       f"({hub_cache_dir()}) and HF_HUB_OFFLINE=1 forbids downloading it; download it where the "
                       "network allows (unset HF_HUB_OFFLINE) or give a model folder")
    return repo_id
