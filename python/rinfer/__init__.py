"""rinfer: an embedded transformer inference engine (Rust core, called in-process)."""

from rinfer._rinfer import __version__, build_info

__all__ = ["__version__", "build_info"]
