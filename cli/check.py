"""`check [--root DIR] [--repair] [--fast]`: verify docksim's image store against its digests.

Every blob against its digest, every layer against its blob (unpacked again and
compared), every image and tag against what it refers to; one line per problem.
`--repair` removes what is corrupt and the images that depend on it, so that the
next pull fetches them again; the daemon must be stopped.  Exit status 0 when
clean, 1 when problems remain, 2 when DIR is not a store.
"""
from __future__ import annotations


def cmd_check(args, console) -> int:
    from launcher.check_cmd import run
    return run(args)


def register(sub) -> None:
    from launcher.check_cmd import add_arguments
    p = sub.add_parser("check", help="verify the daemon's image store (blobs, layers, images) "
                                     "and optionally repair it", description=__doc__)
    add_arguments(p, root_required=False)
    p.set_defaults(func=cmd_check)
