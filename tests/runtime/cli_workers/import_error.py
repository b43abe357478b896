"""A worker whose import fails: the CLI reports the traceback."""

raise RuntimeError("this worker fails at import time")
