"""``python -m bnnc`` runs the command-line tool (also as each worker of ``bnnc finetune --nproc``)."""

import os

if os.environ.get("BNNC_LAUNCHER_PID"):  # a torchrun worker: die with torchrun, before anything else
    from bnnc.distributed import die_with_launcher

    die_with_launcher()

from bnnc.cli import main  # noqa: E402 - after the worker's parent-death request

main()
