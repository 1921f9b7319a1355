"""`avsev.data`: reading NTSB exports (the implementation lives in `avsev.pipeline.data`)."""

from avsev.pipeline.data import DataError, LoadedData, load, load_frame

__all__ = ["DataError", "LoadedData", "load", "load_frame"]
