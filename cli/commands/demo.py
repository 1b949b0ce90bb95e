"""`magnetar demo`: the platform up, a demo tenant onboarded, events and recommendations live."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser("demo", help="run the platform and show it working")
    demo.add_argument("--seconds", type=float, default=60.0, help="how long to send events")
    demo.add_argument("--rate", type=float, default=200.0, help="events per second")
    demo.set_defaults(handler=_demo)


def _demo(args: argparse.Namespace) -> int:
    from cli.demo import DemoOptions, run

    return run(DemoOptions(seconds=args.seconds, rate=args.rate))
