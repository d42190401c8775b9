"""Run a command and append its peak RSS (KiB) and CPU seconds (user + sys) to a file.

    python3 -S -I maxrss.py OUTFILE LABEL command args...

bench.py wraps both filters (git-theta filter-process, git-lfs filter-process)
in this launcher, so their peak memory is measured the same way. Only `os`
is imported, to keep the added start-up time near 10 ms.
"""

import os
import sys


def main() -> int:
    out_file, label, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    # wait4 covers the child and the descendants it reaped. Its ru_maxrss is
    # at least this launcher's own anonymous memory at fork (about 5 MiB):
    # exec keeps the high-water mark of the memory it replaces.
    with open(out_file, "a") as out:
        out.write(f"{label} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.3f}\n")
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
