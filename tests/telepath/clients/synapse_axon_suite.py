"""Synapse's own Axon test (``synapse/tests/test_axon.py``) against a remote Axon.

Runs ``AxonTest.runAxonTestBase`` -- the part of Synapse's suite that drives
the Axon API, which Synapse itself runs against a local Axon and against a
Telepath proxy of one (``test_axon_proxy``) -- with the Axon replaced by
``openurl(URL)``. Prints {"ok": bool, "removed": [...], "error": str | null}.

One block is removed before running, because it tests the local Axon's
internals rather than its API: it mock-patches ``synapse.axon.Axon._sha256ToLink``
in the test's own process, to see the local Axon close a reader's link when
the caller stops early, and to turn a present hash into a missing one. A
remote Axon never calls that patched method, so the block can only fail. The
removal is by its first and last lines; if Synapse changes them, this script
fails instead of silently running something else.

Also runs ``test_axon_limits``'s body (``limits``) on an Axon started with
``--max-count 10`` or ``--max-bytes 320``.

Usage: synapse_axon_suite.py URL [axon|limits]
"""

import inspect
import json
import sys
import traceback
from collections.abc import Awaitable, Callable

import synapse.common as s_common
import synapse.exc as s_exc
import synapse.telepath as s_telepath
import synapse.tests.test_axon as t_axon

LOCAL_INTERNALS = ("        evt = asyncio.Event()\n", "        # CSV with alternative delimiter\n")


def remote_test_base() -> tuple[Callable[..., Awaitable[None]], list[str]]:
    """``runAxonTestBase``'s source without the block that patches a local Axon."""
    lines, lineno = inspect.getsourcelines(t_axon.AxonTest.runAxonTestBase)
    source = "".join(lines)
    first, last = LOCAL_INTERNALS
    start, end = source.index(first), source.index(last)
    removed = source[start:end]
    assert "_sha256ToLink" in removed, "the removed block is not the one this script expects"
    namespace = dict(vars(t_axon))
    # Compiled as a method of a class, as written: its csv literals start at column 0,
    # so the source cannot be dedented.
    # Blank lines keep a failure's line numbers those of Synapse's file.
    body = (
        "\n" * (lineno - 2)
        + "class Remote:\n"
        + source[:start]
        + "\n" * removed.count("\n")
        + source[end:]
    )
    filename = inspect.getsourcefile(t_axon)
    assert filename is not None
    exec(compile(body, filename, "exec"), namespace)  # noqa: S102
    run_base: Callable[..., Awaitable[None]] = namespace["Remote"].runAxonTestBase
    return run_base, [f"{first.strip()} ... {last.strip()}"]


# Synapse ships no type information: its AxonTest is Any to a type checker.
class RemoteAxonTest(t_axon.AxonTest):  # type: ignore[misc]
    url = ""
    run_base: Callable[..., Awaitable[None]] | None = None

    async def test_remote_axon(self) -> None:
        assert self.run_base is not None
        async with await s_telepath.openurl(self.url) as axon:
            await self.run_base(axon)

    async def test_remote_limits(self) -> None:
        """``test_axon_limits``'s body, on an Axon started with a count or a size limit."""
        async with await s_telepath.openurl(self.url) as axon:
            for _ in range(10):
                await axon.put(s_common.buid())
            with self.raises(s_exc.HitLimit):
                await axon.put(s_common.buid())


def main(url: str, which: str) -> None:
    run_base, removed = remote_test_base()
    RemoteAxonTest.url = url
    RemoteAxonTest.run_base = run_base
    test = RemoteAxonTest(f"test_remote_{which}")
    result = test.defaultTestResult()
    test.run(result)
    problems = result.errors + result.failures
    error = None if not problems else "".join(text for _, text in problems)[-6000:]
    print(
        json.dumps(
            {
                "ok": result.wasSuccessful() and result.testsRun == 1,
                "removed": removed,
                "error": error,
            }
        )
    )


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "axon")
    except Exception:
        traceback.print_exc()
        sys.exit(1)
