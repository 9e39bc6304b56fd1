#!/usr/bin/env bash
# One command: install (once) and run the demo on the embedded broker.
source "$(dirname "${BASH_SOURCE[0]}")/_venv.sh"
exec leadpulse demo "$@"
