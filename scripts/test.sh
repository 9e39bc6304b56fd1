#!/usr/bin/env bash
# One command: install (once) and run the whole test suite against a real embedded broker,
# real RocksDB and real torch.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
python -m pytest "$@"
