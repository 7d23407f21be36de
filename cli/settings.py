"""Configuration from the environment, one frozen object shared by every process."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class Settings(msgspec.Struct, frozen=True):
    """What a TuneForge process needs to find its peers and its storage."""

    data_dir: Path
    nats_url: str
    database_url: str
    blob_url: str
    cache_url: str
    cache_reset_password: str | None
    soundfont_dir: Path
    mood_model_dir: Path | None  # None: the model committed with the mood actor

    @classmethod
    def from_env(cls, data_dir: Path | None = None) -> Settings:
        data = (data_dir or Path(os.environ.get("TUNEFORGE_DATA_DIR", "data"))).expanduser().resolve()
        return cls(
            data_dir=data,
            nats_url=os.environ.get("TUNEFORGE_NATS_URL", ""),
            database_url=os.environ.get(
                "TUNEFORGE_DATABASE_URL", f"sqlite+aiosqlite:///{data / 'tuneforge.db'}"
            ),
            blob_url=os.environ.get("TUNEFORGE_BLOB_URL", ""),
            cache_url=os.environ.get("TUNEFORGE_CACHE_URL", "memory://"),
            # An empty password counts as unset: it must never open the guarded endpoint.
            cache_reset_password=os.environ.get("CACHE_RESET_PWD") or None,
            soundfont_dir=Path(os.environ.get("TUNEFORGE_SOUNDFONT_DIR", "/usr/share/sounds/sf2")),
            mood_model_dir=Path(os.environ["TUNEFORGE_MOOD_MODEL_DIR"])
            if os.environ.get("TUNEFORGE_MOOD_MODEL_DIR")
            else None,
        )
