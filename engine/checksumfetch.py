"""Fetching a checksum file named by URL (``--checksum-file https://.../SHA256SUMS``): one bounded GET.

The command line fetches it once, before any download is added, so a missing or bad file is a usage
error and every task gets the same table (see the README, "Checksum files").
"""

from __future__ import annotations

import asyncio

import aiohttp

from engine.checksumfile import MAX_FILE_BYTES, ChecksumFileError
from engine.errors import DownloadError
from engine.http import USER_AGENT, check_url, classify, ssl_option, status_error
from engine.models import TaskOptions

MAX_REDIRECTS = 10
"""Redirects followed for a checksum file."""
CHUNK = 64 * 1024


async def fetch_checksum_file(url: str, options: TaskOptions) -> bytes:
    """The body of the checksum file at ``url``: one GET (redirects followed), no retries.

    Honours ``options``' proxy (else the environment's), TLS verification, User-Agent and timeouts;
    the whole exchange must end within ``connect_timeout + 2 * timeout`` seconds. ``-H`` headers are
    not sent: they are meant for the download's host. Raises ChecksumFileError with a one-line
    reason for anything but a 200 with at most :data:`~engine.checksumfile.MAX_FILE_BYTES` bytes.
    """
    try:
        check_url(url)
    except DownloadError as exc:
        raise ChecksumFileError(exc.reason) from None
    headers = {"User-Agent": options.user_agent or USER_AGENT, "Accept-Encoding": "identity"}
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=options.connect_timeout, sock_read=options.timeout
    )
    try:
        async with (
            asyncio.timeout(options.connect_timeout + 2 * options.timeout),
            aiohttp.ClientSession(trust_env=True, auto_decompress=False, timeout=timeout) as session,
            session.get(
                url,
                headers=headers,
                proxy=options.proxy,
                ssl=ssl_option(options),
                max_redirects=MAX_REDIRECTS,
            ) as resp,
        ):
            if resp.status != 200:
                raise ChecksumFileError(status_error(resp.status, resp.reason).reason)
            if resp.content_length is not None and resp.content_length > MAX_FILE_BYTES:
                raise ChecksumFileError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
            body = bytearray()
            while chunk := await resp.content.read(CHUNK):
                body += chunk
                if len(body) > MAX_FILE_BYTES:
                    raise ChecksumFileError(f"larger than {MAX_FILE_BYTES // 1024} KiB")
            if resp.content_length is not None and len(body) != resp.content_length:
                raise ChecksumFileError("body ended early (truncated transfer)")
            return bytes(body)
    except ChecksumFileError:
        raise
    except aiohttp.TooManyRedirects:
        raise ChecksumFileError(f"more than {MAX_REDIRECTS} redirects") from None
    except aiohttp.ClientError as exc:
        # Before TimeoutError: aiohttp's read timeout is one too, and classify() names it.
        raise ChecksumFileError(classify(exc).reason) from None
    except TimeoutError:
        deadline = options.connect_timeout + 2 * options.timeout
        raise ChecksumFileError(f"no complete answer within {deadline:g} s") from None
    except (OSError, ValueError) as exc:
        raise ChecksumFileError(classify(exc).reason) from None
