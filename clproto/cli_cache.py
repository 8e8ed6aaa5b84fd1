"""``clproto cache ls|clear``: inspect and empty the decoded-image and feature cache."""

from __future__ import annotations

import argparse

from clproto.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="list or clear cached decoded images and features",
                       description="The cache (--cache-dir, else $CLPROTO_CACHE, else ~/.cache/clproto/cache) holds "
                                   "decoded image folders and backbone features, memory-mapped and keyed by content "
                                   "hashes. `ls` lists entries; `clear` removes them (all, or by --kind / --match).")
    p.add_argument("action", choices=("ls", "clear"), help="ls: list entries; clear: remove entries")
    p.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: $CLPROTO_CACHE or ~/.cache/clproto/cache)")
    p.add_argument("--kind", choices=("decoded", "features"), help="only entries of this kind")
    p.add_argument("--match", metavar="TEXT", help="only entries whose folder name contains TEXT")


def cmd_cache(args: argparse.Namespace) -> int:
    from clproto.data.paths import cache_root
    from clproto.features.cache import clear_entries, list_entries

    root = cache_root(args.cache_dir)
    if args.cache_dir and not root.is_dir():
        raise ConfigError("cache folder does not exist", where="--cache-dir", value=args.cache_dir)
    if args.action == "ls":
        entries = [e for e in list_entries(args.cache_dir)
                   if (args.kind is None or e.kind == args.kind) and (args.match is None or args.match in e.path.name)]
        for e in entries:
            print(f"{e.kind:<9} {e.nbytes / 2**20:9.1f} MB  {e.path.name:<52} {e.description}")
        total = sum(e.nbytes for e in entries)
        print(f"{len(entries)} entries, {total / 2**20:.1f} MB in {root}")
        return 0
    removed = clear_entries(args.cache_dir, kind=args.kind, match=args.match)
    print(f"removed {len(removed)} entries ({sum(e.nbytes for e in removed) / 2**20:.1f} MB) from {root}")
    return 0
