"""The command line every study script shares: ``python sweeps/<study>.py [--config Y] [--resume] ...``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from clip2point.commands.common import add_config_arguments, config_from_args
from clip2point.config import ExperimentConfig
from clip2point.errors import Clip2PointError
from clip2point.prepare import prepare
from clip2point.sweep.report import print_table, write_results
from clip2point.sweep.runner import SweepOutcome, run_study
from clip2point.sweep.study import Study
from clip2point.tracking import Tracker


def build_parser(study: Study) -> argparse.ArgumentParser:
    script = f"sweeps/{study.name}.py"
    parser = argparse.ArgumentParser(
        prog=f"python {script}",
        description=f"{study.title} as a Ray Tune sweep, tracked in MLflow. Without --config or --preset the "
        f"study's toy setting {study.settings().name} is used.",
        epilog=f"""examples:
  python {script}                                     # toy world, this laptop
  python {script} --config sweeps/{study.settings("paper").name}   # the paper's setting (real data, GPUs)
  python {script} --resume                            # continue an interrupted sweep
writes results/{study.name}.md and .png; `mlflow ui` in the project root shows the runs""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="continue the interrupted sweep of this study")
    parser.add_argument("--quiet", action="store_true", help="no Tune status table")
    return parser


def run_and_report(
    study: Study,
    config: ExperimentConfig,
    *,
    resume: bool,
    command: str,
    verbose: int = 1,
    within: Tracker | None = None,
) -> SweepOutcome:
    """Run the sweep, write ``results/<study>.{md,png}``, attach them to the parent run and close it (FAILED
    with the traceback if writing them fails).
    ``within``: an MLflow run to nest the sweep's parent run under."""
    config = prepare(config)  # the storage is probed by run_study (and run_pretraining), before they start
    if study.prepare is not None:
        config = study.prepare(config)
    outcome = run_study(study, config, resume=resume, verbose=verbose, within=within)
    with Tracker.attach(outcome.tracking_uri, outcome.parent_run_id).active() as parent:  # never left RUNNING
        md, png = write_results(study, config, outcome, command)
        parent.log_artifact(md)
        parent.log_artifact(png)
    print_table(study, outcome, config)
    print(f"\nwrote {md} and {png}; MLflow parent run {outcome.parent_run_id} ({outcome.tracking_uri})")
    return outcome


def run_script(script: str | Path, argv: list[str] | None = None) -> int:
    """Entry point of ``sweeps/<name>.py``: runs the study called ``<name>``."""
    from clip2point.sweep.studies import STUDIES

    return main(STUDIES[Path(script).stem], argv)


def main(study: Study, argv: list[str] | None = None) -> int:
    """Entry point of ``sweeps/<study>.py``, with the study's toy setting (:meth:`Study.settings`) as the
    default config; exit status 0, 1 if some trial failed, 2 on bad input."""
    args = build_parser(study).parse_args(argv)
    command = "python " + shlex.join([f"sweeps/{study.name}.py", *(sys.argv[1:] if argv is None else argv)])
    if args.config is None and args.preset is None:
        args.config = study.settings()  # the study's toy setting; --preset alone means the preset's setting
    try:
        config = config_from_args(args)
        outcome = run_and_report(
            study, config, resume=args.resume, command=command, verbose=0 if args.quiet else 1
        )
    except Clip2PointError as error:
        print(f"{study.name}: error: {error}", file=sys.stderr)
        return 2
    if outcome.failed:
        print(
            f"{len(outcome.failed)} trial(s) failed: "
            + "; ".join(f"{t.name}: {t.error}" for t in outcome.failed)
        )
        return 1
    return 0
