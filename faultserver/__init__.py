"""A synthetic HTTP server with injectable faults, for the tests, ``fetchtop demo`` and the benchmark.

Files are virtual: the bytes of a file are a pure function of its name, its ``version`` and the offset,
so any range of any size is produced instantly with no disk and no per-byte Python work, and a test can
compute the expected content (:mod:`faultserver.content`) without downloading.

- :mod:`faultserver.content`: the deterministic content, expected bytes and hashes, ETag, Last-Modified;
- :mod:`faultserver.specs`: :class:`~faultserver.specs.FileSpec` (a file and its faults) and the
  per-file accounting;
- :mod:`faultserver.ranges`: ``Range`` and ``If-Range`` as the server reads them;
- :mod:`faultserver.server`: :class:`~faultserver.server.FaultServer`, the aiohttp server;
- :mod:`faultserver.runner`: the server on a background thread, and serving a set of files until
  cancelled;
- ``python -m faultserver --port 8080 NAME:SIZE ...`` serves files by hand.

It is not part of the engine and imports neither the engine nor any UI toolkit.
"""
