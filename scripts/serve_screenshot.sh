#!/usr/bin/env bash
# Regenerate docs/serve.png: the browser test's screenshot of `seemore serve` after one upscale.
set -euo pipefail
cd "$(dirname "$0")/.."
SEEMORE_BROWSER_TESTS=required SEEMORE_SCREENSHOT=docs/serve.png \
  python -m pytest -q tests/test_serve_browser.py -k photo_like_the_cli
echo "wrote docs/serve.png"
