#!/bin/sh
# Writes the man page ckptkit(1) from the binary's own --help texts (help2man, Debian help2man):
# the top-level help, then every subcommand's help as a section of its own.
# Usage: cmake/ckptkit-man.sh CKPTKIT_BINARY OUTPUT
set -eu
bin=$1
out=$2
include=$(mktemp)
trap 'rm -f "$include"' EXIT
roff() {  # help text as literal roff: backslashes escaped, no line starting with a request
  sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}
{
  echo "[COMMANDS]"
  for c in $("$bin" completion commands); do
    echo ".SS $c"
    echo ".nf"
    "$bin" "$c" --help | roff
    echo ".fi"
  done
  echo "[EXIT STATUS]"
  echo "0 done, 1 runtime failure (I/O, numerics), 2 usage error or invalid input,"
  echo "130 interrupted by SIGINT or SIGTERM (no output left behind)."
  echo "[SEE ALSO]"
  echo "The documentation in the project's docs/ folder; shell completion: ckptkit completion bash|zsh."
} >"$include"
help2man --no-info --no-discard-stderr --section=1 \
  --name="decompose and compress LLM checkpoints" --include="$include" --output="$out" "$bin"
