"""rinfer's HTTP server (FastAPI): ``create_app(settings)``; run it with ``rinfer serve``."""

from .app import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
