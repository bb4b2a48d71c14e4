"""`trilevel` console script: train, eval, export, viz (one entry; each part parses its own flags).

Every TrainConfig field is a flag of `trilevel train` (underscores become dashes) with its
help text from the field, so the CLI and the config cannot drift apart. Bad input ends with one `error:` line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, fields

from .checkpoint import CheckpointError
from .config import TrainConfig, preset_defaults
from .validate import NonFiniteLoss


def _flag_type(f) -> tuple[type, dict]:
    hint = typing.get_type_hints(TrainConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = typing.get_origin(args[0]) or args[0]
    if base is bool:
        return bool, {"action": argparse.BooleanOptionalAction}
    if base is tuple:
        return int, {"nargs": "+", "type": int}
    return base, {"type": base}


def add_train_args(parser: argparse.ArgumentParser) -> None:
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        _, kwargs = _flag_type(f)
        default = f.default if f.default is not MISSING else None
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=default,
            help=f"{f.metadata['help']} (default: {default})",
            **kwargs,
        )
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop after this many epochs (resumable)"
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if f.name != "extra"}
    cfg = TrainConfig(**values)
    if cfg.locations is not None:
        cfg.locations = tuple(cfg.locations)
    return cfg


def parse_train(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The parsed flags of ``trilevel train``. A preset sets defaults; flags given on the
    command line still win, so the flags are parsed again once the preset is known."""
    args = parser.parse_args(argv)
    parser.set_defaults(**preset_defaults(args.preset))
    return parser.parse_args(argv)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import run

    metrics = run(config_from_args(args), stop_after=args.stop_after)
    if metrics:
        print(summary(metrics))
    return 0


def summary(m: dict) -> str:
    top1 = f"{m['top1']:.2f}%" if m["top1"] is not None else "n/a"
    return "\n".join(
        [
            f"model {m['model']} on {m['dataset']}, {m['epochs']} epochs, device {m['device']}",
            f"  test top-1            {top1}",
            f"  wall time             {m['wall_time_s']:.1f} s  ({m['img_per_s']:.0f} img/s training)",
            f"  keep ratios           token {m['token_keep']}, attention {m['attn_keep']}, examples {m['example_keep']}",
            f"  tokens per stage      {' -> '.join(map(str, m['tokens_per_stage']))}",
            f"  MACs per image        {m['macs_per_image'] / 1e6:.2f} M (dense {m['dense_macs_per_image'] / 1e6:.2f} M, "
            f"saving {100 * m['macs_saving']:.1f}%)",
            f"  training MACs saving  {100 * m['train_macs_saving']:.1f}% against dense on the full data",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trilevel", description="Tri-Level E-ViT training and export")
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train", help="train a timm ViT with the three levels")
    add_train_args(train_parser)
    sub.add_parser("export", help="write the 16-bit fixed-point model package", add_help=False)
    sub.add_parser("viz", help="pictures of forgotten examples and pruned patches", add_help=False)
    sub.add_parser("eval", help="top-1 of a checkpoint on its test set", add_help=False)

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("export", "viz", "eval"):
        return _delegate(argv[0], argv[1:])
    parser.parse_args(argv)  # --help, a missing command or an unknown flag end here
    try:
        return cmd_train(parse_train(train_parser, argv[1:]))
    except KeyboardInterrupt:
        print("interrupted; the run resumes from its last checkpoint", file=sys.stderr)
        return 130
    except (ValueError, CheckpointError, NonFiniteLoss, OSError) as e:
        # Caused by the user's input or the disk: one line. Anything else is a bug and keeps its traceback.
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line. A DataLoader worker's error carries the worker's
    traceback in its message; its last line is the original error."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    if not lines:
        return type(e).__name__
    if len(lines) > 1 and "DataLoader worker" in lines[0]:
        return lines[-1].split(": ", 1)[-1]  # drop the exception's module path
    return " ".join(lines)


def _delegate(command: str, argv: list[str]) -> int:
    if command == "export":
        from model_export.cli import main as export_main

        return export_main(argv)
    if command == "eval":
        from .eval_cli import main as eval_main

        return eval_main(argv)
    from .viz import main as viz_main

    return viz_main(argv)


if __name__ == "__main__":
    sys.exit(main())
