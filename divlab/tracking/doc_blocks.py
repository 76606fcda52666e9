"""Generated blocks inside hand-written Markdown: `<!-- results:NAME -->` … `<!-- /results -->`.

The text between a block's two markers belongs to the generator named NAME; everything around it is prose. A
page is rebuilt by replacing each block's body with what its generator returns now, so a check can rebuild a page
and compare it with the committed one.
"""
import re
from collections.abc import Callable

BLOCK = re.compile(r"(<!-- results:(?P<name>[\w\-/.]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.DOTALL)


class BlockError(ValueError):
    """A page names a block no generator makes, or its markers do not pair."""


def block_names(text: str) -> list[str]:
    """The names of the generated blocks in a page, in order."""
    return [match["name"] for match in BLOCK.finditer(text)]


def rebuild(text: str, generator: Callable[[str], Callable[[], str]], page: str = "the page") -> str:
    """`text` with every block's body replaced by what `generator(name)()` returns (ending in one newline);
    `generator` raises KeyError for a name it does not know."""
    opened, closed = text.count("<!-- results:"), text.count("<!-- /results -->")
    if opened != closed:
        raise BlockError(f"{page}: {opened} block openings but {closed} closings")

    def body(match: re.Match) -> str:
        try:
            make = generator(match["name"])
        except KeyError:
            raise BlockError(f"{page}: no generator for block {match['name']!r}") from None
        return match.group(1) + make().rstrip("\n") + "\n" + match.group(4)

    return BLOCK.sub(body, text)


def markdown_table(header, rows) -> str:
    """A Markdown table: the header, its rule, one line per row (cells as `str` gives them)."""
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"  # noqa: E731
    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])
