"""``clproto cache ls|clear``: inspect and empty the decoded-image and feature cache."""

from __future__ import annotations

import argparse

from clproto.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("cache", help="list or clear cached decoded images and features",
                       description="The cache (--cache-dir, else $CLPROTO_CACHE, else ~/.cache/clproto/cache) holds "
                                   "decoded image folders and backbone features, memory-mapped and keyed by content "
                                   "hashes, and backbones trained on a few-shot base session (base-trained:). `ls` lists "
                                   "every entry with its size and description; `clear` removes them (all, or by --kind / "
                                   "--match).")
    p.add_argument("action", choices=("ls", "clear"), help="ls: list entries; clear: remove entries")
    p.add_argument("--cache-dir", metavar="DIR", help="cache folder (default: $CLPROTO_CACHE or ~/.cache/clproto/cache)")
    p.add_argument("--kind", choices=("decoded", "features", "base-trained"), help="only entries of this kind")
    p.add_argument("--match", metavar="TEXT",
                   help="only entries whose name or description (as `ls` prints them) contains TEXT, e.g. resnet20")


def cmd_cache(args: argparse.Namespace) -> int:
    from clproto.data.paths import cache_root
    from clproto.features.cache import clear_entries, list_entries, select_entries

    root = cache_root(args.cache_dir)
    if args.cache_dir and not root.is_dir():
        raise ConfigError("cache folder does not exist", where="--cache-dir", value=args.cache_dir)
    if args.action == "ls":
        entries = select_entries(list_entries(args.cache_dir), kind=args.kind, match=args.match)
        for e in entries:
            print(f"{e.kind:<12} {e.nbytes / 2**20:9.1f} MB  {e.path.name:<52} {e.description}")
        total = sum(e.nbytes for e in entries)
        print(f"{len(entries)} entries, {total / 2**20:.1f} MB in {root}")
        return 0
    removed = clear_entries(args.cache_dir, kind=args.kind, match=args.match)
    print(f"removed {len(removed)} entries ({sum(e.nbytes for e in removed) / 2**20:.1f} MB) from {root}")
    return 0
