#!/bin/sh
# Part of the example package: prints which version of it is installed.
here=$(cd "$(dirname "$0")/.." && pwd -P)
echo "hello from the example package, installed at $here"
