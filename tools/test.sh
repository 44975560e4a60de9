#!/usr/bin/env bash
# Set up (Debian packages, .venv with the test extra) and run every check: lint, format,
# the import-layer contract (import-linter), types (mypy, strict on the cores), generated
# labs and the Korean edition up to date, no stale translation, the whole pytest suite
# including browser, nginx and root tests.
# Extra arguments go to one pytest run (for example -m "not slow" for a quick run); with none,
# the suite runs in the three parts tests/conftest.py names, two of them at once.
source "$(dirname "$0")/setup.sh"
[ "${DEPLOYLAB_SKIP_APT:-}" = 1 ] || install_system_packages
make_venv "[test]"
export PATH="$VENV/bin:$PATH"
echo "==> ruff"
ruff check .
ruff format --check .
echo "==> the layer contract (ARCHITECTURE.md; [tool.importlinter] in pyproject.toml)"
lint-imports
echo "==> types (mypy; strict on the pure cores)"
mypy
echo "==> labs/ is what 'deploylab grade release' generates"
if deploylab grade --help >/dev/null 2>&1; then
  deploylab grade release
  git diff --exit-code --stat -- labs/ || { echo "!! labs/ differs from the release of autograder/source: run 'deploylab grade release' and commit" >&2; exit 1; }
  untracked=$(git ls-files --others --exclude-standard -- labs/)
  [ -z "$untracked" ] || { echo "!! untracked generated files in labs/: $untracked" >&2; exit 1; }
fi
echo "==> the Korean edition is what 'deploylab translate build' generates, from current catalogs"
deploylab translate build >/dev/null
git diff --exit-code --stat -- lessons-ko/ labs-ko/ assets/glossary.md || { echo "!! the Korean edition differs from its build: run 'deploylab translate build' and commit" >&2; exit 1; }
untracked=$(git ls-files --others --exclude-standard -- lessons-ko/ labs-ko/)
[ -z "$untracked" ] || { echo "!! untracked generated files in the Korean edition: $untracked" >&2; exit 1; }
deploylab translate check || { echo "!! translations are missing or stale (cell ids above): translate them in i18n/ko/" >&2; exit 1; }
echo "==> the widget manager for take-home HTML copies (npm, once)"
deploylab export-html --fetch-only || echo "!! could not fetch it from npm: tests/test_export_html.py will skip (fail on CI)" >&2
if [ $# -gt 0 ]; then
  echo "==> pytest $*"
  exec pytest "$@"
fi
# The whole suite in three parts (RUN_PARTS in tests/conftest.py): the part that mostly waits
# on Chromium, kernels and JupyterLab runs beside the rest, its output kept and shown after;
# then the load-sensitive tests alone. Every part runs to its end; any failure fails the run.
waiting_log=$(mktemp)
echo "==> pytest, the waiting part (browser, notebooks, export; shown when it ends) beside the rest"
DEPLOYLAB_TEST_PART=waiting pytest -p no:cacheprovider --durations=25 >"$waiting_log" 2>&1 &
waiting_pid=$!
rest=0 waiting=0 alone=0
DEPLOYLAB_TEST_PART=rest pytest --durations=25 || rest=$?
wait "$waiting_pid" || waiting=$?
echo "==> pytest, the waiting part"
cat "$waiting_log"
rm -f "$waiting_log"
echo "==> pytest, the tests that need the machine to themselves"
DEPLOYLAB_TEST_PART=alone pytest -p no:cacheprovider --durations=10 || alone=$?
echo "==> pytest exit codes: rest $rest, waiting $waiting, alone $alone"
[ "$rest" = 0 ] && [ "$waiting" = 0 ] && [ "$alone" = 0 ]
