"""Shared by the bench drivers: run a command and measure it (wall, peak RSS, CPU of the child)."""
import os
import subprocess
import sys
import time


def measure(cmd, env):
    """(wall s, peak RSS MiB, CPU s = user + sys of the child and its threads); exits on failure."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    _, err = p.communicate()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return wall, ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime
