"""Scaffolding shared by the tests: waiting, time limits, ports, child processes, and the helpers of the
engine, CLI, daemon, nginx and dashboard tests. Nothing here is a test; nothing here is mocked."""
