# Sourced by bin/setup, bin/demo and bin/test: run in a virtual environment, never in the system's Python.
# Uses the one already active (VIRTUAL_ENV, or a python3 that is itself a venv's); else creates and activates
# .venv in this clone. pip then installs into it, and git finds its `git-theta` on PATH.
apt_install() {
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; else sudo apt-get update -qq && sudo apt-get install -y -qq "$@" >/dev/null; fi
}
if python3 -c 'import sys; sys.exit(0 if sys.prefix != sys.base_prefix else 1)' 2>/dev/null; then
    :   # already inside a virtual environment
else
    if [ ! -x .venv/bin/python3 ]; then
        # Debian/Ubuntu ship venv's ensurepip separately (python3-venv); a failed attempt leaves a half-made dir.
        python3 -m venv .venv 2>/dev/null || { rm -rf .venv; apt_install python3-venv; python3 -m venv .venv; }
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
