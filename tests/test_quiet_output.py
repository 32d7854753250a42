"""Output meant for a log file: no terminal colour codes, no banner repeated on every start."""

from __future__ import annotations

import sys

import pytest


@pytest.mark.parametrize("redirected", [True, False])
def test_no_colour_codes_or_token_banner_when_redirected(redirected, capfd, monkeypatch):
    import ray._private.worker as ray_worker
    from ray._private.authentication import authentication_token_setup as token_setup

    from bench import executors

    monkeypatch.delenv("RAY_COLOR_PREFIX", raising=False)
    if not redirected:  # a terminal: Ray's own rendering is left alone
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
        monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert executors.plain_output_when_redirected() is redirected
    # what the driver prints for a worker's line, and Ray's notice on a local start
    ray_worker.print_worker_logs({"pid": "4242", "ip": "h", "localhost": "h", "task_name": "execute",
                                  "lines": ["hello from a worker"]}, sys.stderr)
    token_setup._warn_token_auth_enabled()
    out, err = capfd.readouterr()
    assert "hello from a worker" in err
    if redirected:
        assert "\x1b[" not in out + err and executors.RAY_TOKEN_BANNER not in out + err
    else:
        assert "\x1b[" in err
