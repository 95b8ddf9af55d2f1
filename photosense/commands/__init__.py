"""Extra ``photosense`` subcommands, one module each, found automatically by ``photosense.cli``.

A command module defines ``NAME`` (the subcommand), ``HELP`` (one line), ``configure(parser)``
(adds its arguments) and ``run(args) -> int``. Keep module-level imports light (no torch, no
Qt): ``--help`` imports every command module. Use ``photosense.cli.open_library(args)``,
``photosense.cli.display_path`` and ``photosense.cli.info`` for the shared plumbing, and raise
``PhotosenseError`` for expected problems (the CLI prints one line and exits 1).
"""


def run_as_job(fn, name: str, kind: str, *, bar: str | None = None, cancellable: bool = True):
    """Run ``fn(ctl)`` as a ``photosense.jobs.Job`` on this thread and return its result (the
    CLI's long commands, like ``photosense score``): its progress (a ``(done, total)`` pair or
    a ``Progress``, through ``ctl.progress``) drives a terminal bar labelled ``bar``; its error
    becomes the command's one-line error (an unexpected one's traceback goes to the log);
    Ctrl-C cancels it."""
    from photosense.cli import TerminalProgress, run_job
    from photosense.jobs import Job, Progress, format_rate

    job = Job(fn, name, kind, cancellable=cancellable)
    if bar:
        terminal = TerminalProgress(bar)

        def show(_job, value) -> None:
            if isinstance(value, Progress):
                terminal(value.done, value.total, format_rate(value.rate))
            else:
                terminal(*value)

        job.on_progress.append(show)
    try:
        return run_job(job)
    except KeyboardInterrupt:
        job.cancel()
        raise
