"""`divlab results build|check|record`: the results pages' tables from committed records.

    divlab results build            # rewrite every generated block of docs/results/*.md and README.md
    divlab results check            # exit 1, naming the blocks, when a page differs from its records
    divlab results record OUT.json RUN_OR_MULTIRUN_DIR ... --metrics M ... --command "..." [--history M ...]
"""
import argparse
import sys
from pathlib import Path

from divlab.tracking.doc_blocks import BlockError, block_names, rebuild
from divlab.tracking.result_records import write_record_set
from divlab.tracking.results_tables import ROOT, generator, write_figures


def pages() -> list[Path]:
    """Every page with generated blocks: the results pages and the README."""
    return sorted((ROOT / "docs" / "results").glob("*.md")) + [ROOT / "README.md"]


def stale_pages() -> dict[Path, str]:
    """Each page whose committed text differs from the one its records make now, with the rebuilt text."""
    stale = {}
    for page in pages():
        text = page.read_text()
        rebuilt = rebuild(text, generator, page=str(page.relative_to(ROOT)))
        if rebuilt != text:
            stale[page] = rebuilt
    return stale


def main(argv=None, prog: str = "divlab results") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="action", required=True)
    commands.add_parser("build", help="rewrite every generated table from the committed records")
    commands.add_parser("check", help="fail when a page's tables differ from what its records make")
    record = commands.add_parser("record", help="trim finished runs into a committed record set")
    record.add_argument("out", type=Path)
    record.add_argument("runs", type=Path, nargs="+")
    record.add_argument("--metrics", nargs="+", required=True)
    record.add_argument("--history", nargs="*", default=[])
    record.add_argument("--command", required=True, help="the command that made the runs, copy-paste runnable")
    record.add_argument("--threads", type=int)
    record.add_argument("--notes", default="")
    record.add_argument("--with-failed", action="store_true", help="keep failed runs too (a study's stability)")
    args = parser.parse_args(argv)

    if args.action == "record":
        records = write_record_set(args.out, args.runs, args.metrics, args.command, args.history, args.threads,
                                   args.notes, args.with_failed)
        print(f"{args.out}: {len(records['runs'])} runs")
        return 0
    try:
        stale = stale_pages()
    except (BlockError, FileNotFoundError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    if args.action == "check":
        for page, rebuilt in stale.items():
            changed = [name for name in block_names(rebuilt)
                       if _block(rebuilt, name) != _block(page.read_text(), name)]
            print(f"{page.relative_to(ROOT)}: stale blocks {', '.join(changed)}; run `divlab results build`",
                  file=sys.stderr)
        return 1 if stale else 0
    for page, rebuilt in stale.items():
        page.write_text(rebuilt)
        print(f"rewrote {page.relative_to(ROOT)}")
    for figure in write_figures():
        print(f"drew {figure.relative_to(ROOT)}")
    return 0


def _block(text: str, name: str) -> str:
    start = text.index(f"<!-- results:{name} -->")
    return text[start:text.index("<!-- /results -->", start)]


if __name__ == "__main__":
    sys.exit(main())
