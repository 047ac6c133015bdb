"""What a `modex` command run in-process (``Journey.cli``) answered: success, or a refusal in
words (exit 1, no traceback) that holds each given sentence."""

from __future__ import annotations


def ok(result) -> str:
    """The command's stdout, after checking it exited 0."""
    code, out, err = result
    assert code == 0, f"exit {code}\nstdout: {out}\nstderr: {err}"
    return out


def refused(result, *needles) -> str:
    """The command's stderr, after checking it was refused (exit 1, no traceback) with each of
    ``needles`` in its words."""
    code, out, err = result
    assert code == 1 and "Traceback" not in out + err, f"exit {code}\nstdout: {out}\nstderr: {err}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err
