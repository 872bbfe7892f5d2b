# Sourced by scripts/finwait and scripts/test: the Python that runs finwait.
#
#   finwait_env EXTRAS   sets PY to a Python with finwait installed (editable,
#                        with EXTRAS, e.g. "" or "[test]") and returns.
#
# The Python is that of the virtual environment already active ($VIRTUAL_ENV),
# else ./.venv, created on first use with `python3 -m venv` (a distribution's
# python3 is "externally managed", PEP 668: pip refuses to install into it).
# The install is skipped when nothing changed since the last one (a stamp in
# the environment records pyproject.toml's digest and the extras).

finwait_env() {
    local extras="$1" root venv stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ -n "${VIRTUAL_ENV:-}" ] && [ -x "$VIRTUAL_ENV/bin/python" ]; then
        venv="$VIRTUAL_ENV"
    else
        venv="$root/.venv"
        if [ ! -x "$venv/bin/python" ]; then
            local base="${FINWAIT_PYTHON:-python3}"
            if ! command -v "$base" >/dev/null 2>&1; then
                echo "finwait: no $base on PATH; install Python 3.11 or later" >&2
                return 1
            fi
            if ! "$base" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
                echo "finwait: $("$base" --version 2>&1) is too old; finwait needs Python 3.11 or later" \
                     "(set FINWAIT_PYTHON to another interpreter)" >&2
                return 1
            fi
            echo "finwait: creating a virtual environment in .venv" >&2
            if ! "$base" -m venv "$venv"; then
                rm -rf "$venv"
                echo "finwait: '$base -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
                return 1
            fi
        fi
    fi
    PY="$venv/bin/python"
    want="$(cd "$root" && "$PY" -c 'import hashlib, sys; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest(), sys.argv[1], sys.argv[2])' "$extras" "$root")"
    stamp="$venv/.finwait-install-${extras:-base}"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "finwait: installing finwait${extras} into ${venv/#$root\//}" >&2
        (cd "$root" && "$PY" -m pip install -q --disable-pip-version-check -e ".${extras}") || return 1
        echo "$want" > "$stamp"
    fi
}
