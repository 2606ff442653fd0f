"""`export`, `import`, `doctor`: the store's results in and out, and its health."""
from __future__ import annotations

import json

from hierpoly.cli.options import (
    fail,
    parse_sample_rows,
    parse_seed,
    print_notes,
)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="write stored results to a bundle (zip)")
    p.add_argument("--out", required=True, help="bundle file to write")
    for name in ("d", "n", "k"):
        p.add_argument(f"--{name}", type=int, nargs="+", default=None, help=f"only these {name}")
    p.add_argument("--seed", type=parse_seed, nargs="+", default=None, help="only these seeds")
    for name in ("mode", "arch", "link"):
        p.add_argument(f"--{name}", nargs="+", default=None, help=f"only these {name}")
    p.add_argument("--keys", nargs="+", default=None, help="only these keys (full hex or a unique prefix)")
    p.add_argument("--preset", default=None, help="only the stored runs of this sweep or transfer preset (see `sweep --preset`, `transfer --preset`)")
    p.add_argument("--no-snapshots", action="store_true",
                   help="leave out the learned-g snapshots (the replay slider), about half of a bundle's size")
    p.add_argument("--sample-rows", type=parse_sample_rows, default=None,
                   help="keep only the first N points of each run's scatter samples (metrics are unchanged)")
    p.add_argument("--first-blocks", choices=("all", "per-source"), default="all",
                   help="per-source: a first block only on one transfer per source run (the block a store reuses)")
    p.set_defaults(func=cmd_export)


def add_import(sub) -> None:
    p = sub.add_parser("import", help="add the results of a bundle to the store")
    p.add_argument("file")
    p.add_argument("--overwrite", action="store_true", help="replace results already stored")
    p.set_defaults(func=cmd_import)


def add_doctor(sub) -> None:
    p = sub.add_parser("doctor", help="check the store and the job table; --repair removes what cannot be read")
    p.add_argument("--repair", action="store_true", help="say what will be removed, then remove it")
    p.set_defaults(func=cmd_doctor)


def cmd_export(args) -> int:
    from hierpoly.results import bundles
    from hierpoly.results.store import Store

    store = Store()
    table = store.summaries()
    print_notes(store)
    if args.preset is not None:
        from hierpoly.jobs import executors
        from hierpoly.study import presets, specs

        try:
            if args.preset in presets.TRANSFER_PRESETS:  # a transfer grid: its runs of every seed it names
                wanted = {cfg.key() for cfg in presets.TRANSFER_PRESETS[args.preset]().configs()}
                table = table[table["key"].isin(wanted)]
            else:
                table = specs.stored_runs(presets.preset(args.preset), store, table)
        except executors.SweepError as err:
            return fail(str(err))
    for name in ("d", "n", "k", "seed", "mode", "arch", "link"):
        wanted = getattr(args, name)
        if wanted is not None:
            table = table[table[name].isin(wanted)]
    keys = list(table["key"])
    if args.keys is not None:
        chosen = []
        for prefix in args.keys:
            hits = [k for k in keys if k.startswith(prefix.lower())]
            if len(hits) != 1:
                return fail(f"key {prefix!r} matches {len(hits)} stored results (after filters), need exactly one")
            chosen.append(hits[0])
        keys = chosen
    if not keys:
        return fail("no stored results match these filters")
    try:
        bundles.write_bundle(store, keys, args.out, snapshots=not args.no_snapshots, sample_rows=args.sample_rows,
                             first_blocks=args.first_blocks.replace("-", "_"))
    except OSError as err:
        return fail(f"cannot write {args.out}: {err.strerror or err}")
    print(json.dumps({"out": str(args.out), "results": len(keys), "keys": keys}))
    return 0


def cmd_doctor(args) -> int:
    from hierpoly.jobs import doctor
    from hierpoly.results.store import default_dir

    directory = default_dir()
    findings = doctor.check(directory)
    note = doctor.disk_note(directory)
    if note is not None:  # not damage: said once, and --repair waits for room
        print(f"note: {note}")
    if not findings:
        print(f"ok: the store and the job table at {directory} are readable")
        return 0
    if not args.repair:
        for finding in findings:
            print(finding.line())
        print(f"{len(findings)} problem(s): run `python -m hierpoly doctor --repair` to fix them as listed")
        return 1
    doctor.repair(directory, findings)
    left = doctor.check(directory)
    for finding in left:
        print(f"still wrong: {finding.line()}")
    print(f"repaired the store at {directory}" if not left else f"{len(left)} problem(s) remain")
    return 0 if not left else 1


def cmd_import(args) -> int:
    from hierpoly.results import bundles
    from hierpoly.results.store import Store

    try:
        with open(args.file, "rb") as fh:
            data = fh.read(bundles.MAX_BUNDLE_BYTES + 1)
    except OSError as err:
        return fail(f"cannot read {args.file}: {err.strerror or err}")
    store = Store()
    added = bundles.import_bundle(store, data, overwrite=args.overwrite)
    print(json.dumps({"added": len(added), "keys": added}))
    return 0

