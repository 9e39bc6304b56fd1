#!/usr/bin/env bash
# One command: install (once) and run the whole test suite against a real embedded broker,
# real RocksDB and real torch.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
# tests/ops runs the real Prometheus tools (promtool, prometheus, amtool); on a fresh CI machine
# install Debian's packages when we can (root with apt-get). Otherwise those tests fail and say so.
if ! command -v promtool >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "leadpulse: installing Debian's prometheus and prometheus-alertmanager for tests/ops ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager; } \
      >/tmp/leadpulse-apt.log 2>&1; then
    echo "leadpulse: apt-get failed (log: /tmp/leadpulse-apt.log); tests/ops will fail" >&2
  fi
fi
# the TLS tests put Debian's stunnel4 in front of the embedded broker, which cannot serve TLS
# itself (docs/kafka-notes.md#trap-9)
if ! command -v stunnel4 >/dev/null 2>&1 && ! command -v stunnel >/dev/null 2>&1 \
    && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "leadpulse: installing Debian's stunnel4 for the TLS tests ..." >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends stunnel4; } \
      >/tmp/leadpulse-apt-stunnel.log 2>&1; then
    echo "leadpulse: apt-get failed (log: /tmp/leadpulse-apt-stunnel.log); the TLS tests will fail" >&2
  fi
fi
# lint first: pyflakes, pycodestyle, isort and bugbear as configured in pyproject.toml
ruff check . || { echo "leadpulse: ruff found problems (ruff check . --fix fixes the safe ones)" >&2; exit 1; }
python -m pytest "$@"
