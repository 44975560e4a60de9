#!/usr/bin/env bash
# Set up (Debian packages, .venv with the test extra) and run every check: lint, format,
# the import-layer contract (import-linter), types (mypy, strict on the cores), generated
# labs and the Korean edition up to date, no stale translation, the whole pytest suite
# including browser, nginx and root tests.
# Extra arguments go to pytest (for example -m "not slow" for a quick run).
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
echo "==> pytest"
exec pytest "$@"
