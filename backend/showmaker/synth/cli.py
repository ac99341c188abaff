"""``showmaker synth``: render a scene spec (default: the packaged one) into a clip with ground truth."""
from __future__ import annotations

import argparse
import logging
import re
import sys

from .clip import load_clip
from .generate import generate_clip
from .spec import SpecError, default_spec, load_spec

__all__ = ["build_parser", "synth_main"]


def _size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[xX](\d+)", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``synth`` arguments, added to ``parser`` (a subcommand's) or to a new parser."""
    p = parser or argparse.ArgumentParser(prog="showmaker synth", description=__doc__)
    p.add_argument("--spec", metavar="FILE", help="scene spec JSON (default: the packaged default scene)")
    p.add_argument("--out", metavar="DIR", help="clip directory (default: $SHOWMAKER_CACHE/synth/<key>/)")
    p.add_argument("--frames", type=int, metavar="N", help="tell the same story in N frames")
    p.add_argument("--size", type=_size, metavar="WxH", help="render at this resolution (even sizes)")
    p.add_argument("--threads", type=int, metavar="N", help="Cycles CPU threads (default: all cores)")
    return p


def synth_main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv``, generate (or find cached) the clip, print its directory; exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        spec = load_spec(args.spec) if args.spec else default_spec()
        if args.frames is not None:
            spec = spec.with_frames(args.frames)
        if args.size is not None:
            spec = spec.with_size(*args.size)
    except (SpecError, OSError) as exc:
        print(f"showmaker synth: {exc}", file=sys.stderr)
        return 2
    path = generate_clip(spec, args.out, threads=args.threads, progress=True)
    clip = load_clip(path)
    t = clip.meta["timing_s"]
    bg = f", {len(clip.background_paths)} background images" if clip.background_paths else ""
    print(f"{path}  ({clip.frame_count} frames {spec.width}x{spec.height}, {len(clip.actor_names)} actors, "
          f"cuts at {clip.cuts}{bg}, {clip.meta['bytes'] / 1e6:.1f} MB, rendered in {t['total']:.0f} s)")
    return 0
