"""Extra ``photosense`` subcommands, one module each, found automatically by ``photosense.cli``.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line), ``configure(parser)``
(adds its arguments) and ``run(args) -> int``. Keep module-level imports light (no torch, no
Qt): ``--help`` imports every command module. Use ``photosense.cli.open_library(args)``,
``photosense.cli.display_path`` and ``photosense.cli.info`` for the shared plumbing, and raise
``PhotosenseError`` for expected problems (the CLI prints one line and exits 1).
"""
