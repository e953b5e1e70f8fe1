"""Find the external tools, installing the Debian packages that provide them when missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

TOOLS: dict[str, tuple[str, ...]] = {
    "nginx": ("nginx-light", "nginx"),
    "aria2c": ("aria2",),
    "axel": ("axel",),
    "curl": ("curl",),
    "wget": ("wget",),
    "tmux": ("tmux",),
    "time": ("time",),
    "openssl": ("openssl",),
}
"""Each command and the Debian packages that provide it, preferred first."""

_SBIN = "/usr/local/sbin:/usr/sbin:/sbin"


class ToolError(RuntimeError):
    """A required tool is missing and could not be installed."""


def which(name: str) -> str | None:
    """Locate ``name`` on PATH, or in the sbin directories a non-root PATH often lacks (nginx)."""
    return shutil.which(name) or shutil.which(name, path=_SBIN)


def ensure_tools() -> dict[str, str]:
    """Return the path of every tool in TOOLS, running apt-get once for any that are missing."""
    missing = [name for name in TOOLS if which(name) is None]
    if missing:
        _apt_install(missing)
    paths: dict[str, str] = {}
    for name in TOOLS:
        path = which(name)
        if path is None:
            raise ToolError(f"{name} is still missing after apt-get install; install it and retry")
        paths[name] = path
    return paths


def _apt_install(missing: list[str]) -> None:
    """Install the packages for ``missing`` with apt-get (through sudo when not root)."""
    if shutil.which("apt-get") is None:
        raise ToolError(f"missing {', '.join(missing)} and no apt-get here; install them and retry")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise ToolError(f"missing {', '.join(missing)}; run as root or install them")
        prefix = ["sudo"]
    print(f"bench: installing {', '.join(missing)} with apt-get", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run([*prefix, "apt-get", "update", "-q"], check=True, env=env)
    # Try each tool's preferred package first; fall back one package at a time (nginx-light is gone
    # from newer Debian releases, nginx replaces it).
    for name in missing:
        for package in TOOLS[name]:
            result = subprocess.run(
                [*prefix, "apt-get", "install", "-y", "-q", "--no-install-recommends", package],
                env=env,
                check=False,
            )
            if result.returncode == 0:
                break
        else:
            raise ToolError(f"could not install any of {', '.join(TOOLS[name])} for {name}")


def nginx_tls_missing(nginx: str) -> str:
    """Why this nginx cannot serve HTTPS (no ``--with-http_ssl_module`` in ``nginx -V``), or ``""``."""
    try:
        result = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"nginx -V failed: {exc}"
    if "--with-http_ssl_module" not in result.stdout + result.stderr:
        return f"{nginx} was built without the SSL module (install nginx-light or nginx from Debian)"
    return ""


def version(path: str) -> str:
    """``NAME VERSION`` from what a tool prints for ``--version`` (nginx: ``-v``, to stderr)."""
    flag = "-V" if os.path.basename(path) == "tmux" else "--version"
    flag = "-v" if os.path.basename(path) == "nginx" else flag
    flag = "version" if os.path.basename(path) == "openssl" else flag
    try:
        result = subprocess.run([path, flag], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (result.stdout or result.stderr).strip()
    found = re.search(r"\d+\.\d+(?:\.\d+)?[a-z]?", text)
    name = os.path.basename(path)
    return f"{name} {found.group(0)}" if found else f"{name} (unknown version)"
