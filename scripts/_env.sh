# Shared by scripts/demo and scripts/test: a project-local virtual environment with what each needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"

# ensure_venv EXTRAS [PIP_FLAGS]: install mt5-monitor (with EXTRAS, e.g. "dev"; "" for the runtime alone)
# unless .venv already has it for this pyproject.toml. The dev install covers the runtime one.
ensure_venv() {
  local extras="$1" flags="${2:-}" hash spec
  hash="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
  if [ -f "$VENV/.installed-$hash-$extras" ] || { [ -z "$extras" ] && [ -f "$VENV/.installed-$hash-dev" ]; }; then
    return 0
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo ">> creating virtual environment in .venv" >&2
    "$PY" -m venv "$VENV"
  fi
  spec="$ROOT"
  [ -n "$extras" ] && spec="$ROOT[$extras]"
  echo ">> installing mt5-monitor${extras:+[$extras]} into .venv" >&2
  # shellcheck disable=SC2086  # flags are deliberately split
  "$VENV/bin/python" -m pip install $flags --disable-pip-version-check -e "$spec"
  rm -f "$VENV"/.installed-*
  touch "$VENV/.installed-$hash-$extras"
}
