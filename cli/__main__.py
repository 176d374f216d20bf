"""``python -m seggpt_video.cli``: the same as the ``seggpt-video`` command."""

from seggpt_video.cli.app import main

main()
