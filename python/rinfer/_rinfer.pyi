from typing import TypedDict

class BuildInfo(TypedDict):
    version: str
    isa: str
    supported_isas: list[str]
    threads: int
    features: list[str]

__version__: str

def build_info() -> BuildInfo: ...
