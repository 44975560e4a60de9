#!/usr/bin/env bash
# Set up (first time) and open the deploylab workbook in JupyterLab on 127.0.0.1.
# Extra arguments go to `deploylab lab` (for example --port 8890 or --no-browser).
source "$(dirname "$0")/setup.sh"
command -v python3 >/dev/null || { echo "python3 (3.11 or newer) is needed" >&2; exit 1; }
python3 -m venv --help >/dev/null 2>&1 || APT_PACKAGES=python3-venv install_system_packages
[ "${DEPLOYLAB_SKIP_APT:-}" = 1 ] || install_system_packages
make_venv ""
exec "$VENV/bin/deploylab" lab "$@"
