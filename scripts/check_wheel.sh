#!/usr/bin/env bash
# Build promptless's wheel and install it, with its core dependencies only, into a fresh virtual
# environment; then import it there and use what an editable install would hide if it were missing:
# the package data (the historic-events data set), the console script, and the lazy sub-packages.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
.venv/bin/python -m pip wheel --quiet --no-deps --no-build-isolation -w "$work/dist" . 2>/dev/null \
  || .venv/bin/python -m pip wheel --quiet --no-deps -w "$work/dist" .
python_bin=${PYTHON:-python3}
"$python_bin" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$work"/dist/promptless-*.whl
cd "$work"  # away from the source tree, so only the installed package can be imported
"$work/venv/bin/python" - <<'PY'
import importlib
import promptless as pl
from promptless import datasets

assert "site-packages" in pl.__file__, pl.__file__
train, dev, test = (datasets.historic_events(split) for split in ("train", "dev", "test"))
assert len(dev) == 100 and len(test) == 375 and len(train) > 100, (len(train), len(dev), len(test))
for name in ("promptless.cli", "promptless.optimize", "promptless.evaluate", "promptless.lm.preflight"):
    importlib.import_module(name)
lm = pl.ScriptedLM(["[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]"])
assert pl.Predict("question -> answer", lm=lm)(question="2+2?").answer == "4"
print(f"wheel ok: promptless {pl.__version__} from {pl.__file__}; {len(train)}/{len(dev)}/{len(test)} events")
PY
"$work/venv/bin/promptless" --version
