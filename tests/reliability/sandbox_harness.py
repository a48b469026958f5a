"""Run one piece of code in promptless's sandbox and print what came back, as JSON.

Started by tests/reliability/test_sandbox_escapes.py as root or as an unprivileged
user, so that the process whose environment, memory and listeners the code tries
to reach is this one. Reads ``{"code": ..., "limits": {...}}`` on stdin. Loads
only ``promptless.errors`` and ``promptless.sandbox`` (no third-party packages), so
any Python 3.10+ that the user can run will do. ``PROMPTLESS_SANDBOX_MODULE``
names another sandbox.py to load instead (to run the catalogue against an older
version of the module).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import resource
import sys
import time
import types

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src", "promptless")


def load_sandbox() -> types.ModuleType:
    package = types.ModuleType("promptless")
    package.__path__ = [SRC]
    sys.modules["promptless"] = package
    path = os.environ.get("PROMPTLESS_SANDBOX_MODULE") or os.path.join(SRC, "sandbox.py")
    for name, file in (("promptless.errors", os.path.join(SRC, "errors.py")), ("promptless.sandbox", path)):
        spec = importlib.util.spec_from_file_location(name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules["promptless.sandbox"]


def main() -> None:
    request = json.loads(sys.stdin.read())
    sandbox = load_sandbox()
    accepted = inspect.signature(sandbox.Sandbox).parameters
    limits = {k: v for k, v in request.get("limits", {}).items() if k in accepted}
    box = sandbox.Sandbox(**limits)
    if hasattr(box, "check"):
        box.check()  # the one-time probe, outside the measured run
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    result = box.run(request["code"])
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "ok": result.ok, "stdout": result.stdout, "value": result.value, "error": result.error,
        "error_type": result.error_type, "details": result.details, "elapsed": elapsed,
        "maxrss_before_kb": before, "maxrss_after_kb": after, "uid": os.geteuid(),
    }, default=str))


if __name__ == "__main__":
    main()
