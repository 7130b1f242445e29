#!/usr/bin/env bash
# Regenerate the completion scripts from the installed app (run after changing commands).
set -euo pipefail
cd "$(dirname "$0")"
for shell in bash zsh fish; do
  _WBG_COMPLETE="source_$shell" wbg > "wbg.$shell"
done
