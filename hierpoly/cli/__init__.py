"""`python -m hierpoly ...`: the headless face of the project."""
from __future__ import annotations

import argparse
import os
import sys

from hierpoly import launch
from hierpoly.cli import bench, run, store, study, transfer
from hierpoly.cli.options import config_from_args, fail
from hierpoly.config import ConfigError, RunConfig
from hierpoly.jobs.budget import BudgetError
from hierpoly.results.bundles import BundleError  # bundles, config, jobs, store: no JAX at import
from hierpoly.results.codec import StoreError
from hierpoly.targets import TargetError

__all__ = ["build_parser", "config_from_args", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one line, exit status 2, no usage dump."""

    def error(self, message):
        raise SystemExit(fail(f"{self.prog}: {message}", 2))


def build_parser(config=RunConfig) -> argparse.ArgumentParser:
    """The command line; `run` takes one option per field of `config`. Each command's module adds its
    parser and sets its handler (``func``); the order here is the order of ``--help``."""
    parser = _Parser(prog="python -m hierpoly", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run.add_run(sub, config)
    for add in (run.add_jobs, run.add_cancel, store.add_export, store.add_import, store.add_doctor,
                study.add_sweep_and_figure2, transfer.add_transfer, bench.add_bench, study.add_check_convergence,
                run.add_target):
        add(sub)
    p = sub.add_parser("app", help="start the web explorer (streamlit run app.py), from a checkout or the installed package")
    p.add_argument("streamlit_args", nargs=argparse.REMAINDER, help="passed on to streamlit run, e.g. --server.port 8502")
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["app"]:  # all that follows is streamlit's: argparse would refuse its --server.* options
        return launch.run_app(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, TargetError) as err:
        return fail(str(err))
    except (BudgetError, BundleError, StoreError) as err:
        return fail(str(err), 1)
    except OverflowError as err:  # a number too large for what it feeds, should one slip past the checks above
        return fail(f"a number is too large: {err}")
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # `jobs | head`: the reader has what it wanted; exiting must not write again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
