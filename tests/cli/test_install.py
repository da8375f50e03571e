#!/usr/bin/env python3
"""`cmake --install` (issue #22, item 10): into a temporary prefix it puts the binary, the man page
ckptkit(1) (help2man over the binary's own --help texts, every subcommand a section) and bash and
zsh completion (`ckptkit completion`); the installed binary runs, the man page renders with
`man -l` and documents every subcommand's flags, and the bash completion completes commands and
flags."""
import os
import shutil
import subprocess
import tempfile

import cktest

C = cktest.Checks()


def main():
    build = os.path.dirname(os.path.abspath(cktest.BIN))
    with tempfile.TemporaryDirectory() as prefix:
        p = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True,
                           text=True)
        C(p.returncode == 0, f"cmake --install: exit {p.returncode} {p.stderr.strip()[-200:]}")
        binary = os.path.join(prefix, "bin", "ckptkit")
        man = os.path.join(prefix, "share", "man", "man1", "ckptkit.1")
        bash = os.path.join(prefix, "share", "bash-completion", "completions", "ckptkit")
        zsh = os.path.join(prefix, "share", "zsh", "vendor-completions", "_ckptkit")
        for f in (binary, man, bash, zsh):
            C(os.path.isfile(f), f"installed {os.path.relpath(f, prefix)}")
        v = subprocess.run([binary, "--version"], capture_output=True, text=True)
        C(v.returncode == 0 and v.stdout.startswith("ckptkit "), f"installed binary: {v.stdout!r}")
        commands = subprocess.run([binary, "completion", "commands"], capture_output=True,
                                  text=True).stdout.split()
        C(len(commands) >= 10 and "svd-init" in commands, f"{len(commands)} commands listed")
        if shutil.which("man"):
            page = subprocess.run(["man", "-l", man], capture_output=True, text=True,
                                  env=dict(os.environ, MANWIDTH="100")).stdout
            missing = [c for c in commands if f"Usage: ckptkit {c}" not in page]
            C(not missing and "EXIT STATUS" in page and "--rank" in page,
              f"man -l ckptkit.1: {len(page.splitlines())} lines, a section per command "
              f"(missing {missing})")
        else:
            C(False, "man is not installed (Debian man-db)")
        script = ("source '%s'; COMP_WORDS=(ckptkit svd-i); COMP_CWORD=1; _ckptkit; "
                  "echo \"${COMPREPLY[*]}\"; COMP_WORDS=(ckptkit quantize --sch); COMP_CWORD=2; "
                  "_ckptkit; echo \"${COMPREPLY[*]}\"" % bash)
        out = subprocess.run(["bash", "-c", script], capture_output=True, text=True).stdout
        lines = out.splitlines()
        C(lines[:2] == ["svd-init", "--scheme"], f"bash completion: svd-i -> {lines[:1]}, "
                                                 f"quantize --sch -> {lines[1:2]}")
        with open(zsh) as f:
            C(f.readline().strip() == "#compdef ckptkit", "zsh completion starts with #compdef")
    C.exit()


main()
