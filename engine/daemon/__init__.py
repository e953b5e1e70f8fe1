"""``fetchtop daemon``: an Engine with no UI, steered over a small JSON/HTTP control API.

The daemon owns one :class:`engine.engine.Engine` whose queue is saved in the state directory's
session file (see :mod:`engine.locations`), keeps a history of finished tasks, and serves the API on
a Unix socket (mode 0600: the file permissions are the authentication) and optionally on TCP with a
bearer token. The pieces:

- :mod:`engine.daemon.config`: what the daemon was asked for, the token file, ``--listen``;
- :mod:`engine.daemon.api`: the HTTP API both ends share (paths, commands, request and answer shapes);
- :mod:`engine.daemon.history`: finished tasks, saved as JSON;
- :mod:`engine.daemon.server`: the aiohttp server and the :class:`~engine.daemon.server.Daemon`;
- :mod:`engine.daemon.process`: lock, pid file, detaching, readiness, logging, ``run_daemon``;
- :mod:`engine.daemon.client`: the :class:`~engine.daemon.client.RemoteClient` the commands use.

This package imports nothing itself, so ``import engine.daemon.client`` loads no server code.
"""
