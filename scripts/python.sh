#!/usr/bin/env bash
# Python 3 and pika for examples/python and its test (tests/suite/python_producer.rs). Installs
# pika with pip when it is missing; says what is wrong and fails when it cannot.
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "[python] python3 missing: installing Debian's python3 and python3-pip"
    apt-get install -y -q python3 python3-pip >/dev/null
  else
    echo "[python] python3 is missing and there is no apt-get to install it" >&2
    exit 1
  fi
fi
if python3 -c 'import pika' 2>/dev/null; then
  exit 0
fi
echo "[python] installing pika"
if ! python3 -m pip --version >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    apt-get install -y -q python3-pip >/dev/null
  else
    echo "[python] pip is missing (python3 -m pip) and there is no apt-get to install it" >&2
    exit 1
  fi
fi
# Debian's own python3 refuses pip installs outside a virtualenv (PEP 668) unless told.
python3 -m pip install -q pika ||
  python3 -m pip install -q --break-system-packages pika
python3 -c 'import pika' || { echo "[python] pika is still not importable" >&2; exit 1; }
