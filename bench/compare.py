#!/usr/bin/env python3
"""Compares two BENCHMARKS.md files (two runs of bench/run.sh) table by table.

    git show OLD_COMMIT:BENCHMARKS.md > /tmp/before.md
    python3 bench/compare.py /tmp/before.md BENCHMARKS.md

For each table of "Throughput by model and connections" and the targets'
per-CPU-second table, prints the same table with every cell as
"after (after / before)", so that a change that made a figure worse stands
out. Cells missing on either side are left as they are. Standard library
only.
"""

import re
import sys

NUMBER = re.compile(r"^-?[\d,]+(?:\.\d+)?")


def tables(path):
    """{title: (header, {row label: [cells]})} for every '### title' table."""
    out, title, header, rows = {}, None, None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                title, header, rows = line.lstrip("# ").strip(), None, None
                continue
            if not line.startswith("|") or title is None:
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header, rows = cells, {}
                out[title] = (header, rows)
            elif not set(line) <= set("|-: "):
                rows[cells[0]] = cells[1:]
    return out


def value(cell):
    m = NUMBER.match(cell)
    return float(m.group(0).replace(",", "")) if m else None


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    before, after = tables(sys.argv[1]), tables(sys.argv[2])
    for title, (header, rows) in after.items():
        if title not in before or not (
                "req/s" in title or "MB/s" in title or "Per server CPU-second" in title):
            continue
        old_header, old_rows = before[title]
        print(f"### {title}: after (after / before)\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for label, cells in rows.items():
            old = old_rows.get(label)
            shown = []
            for i, cell in enumerate(cells):
                col = header[i + 1] if i + 1 < len(header) else None
                j = old_header.index(col) - 1 if old and col in old_header else None
                a = value(cell)
                b = value(old[j]) if old and j is not None and j < len(old) else None
                if a is not None and b:
                    shown.append(f"{NUMBER.match(cell).group(0)} ({a / b:.2f}×)")
                elif a is not None:
                    shown.append(f"{NUMBER.match(cell).group(0)} (new)")
                else:
                    shown.append(cell)
            print("| " + " | ".join([label] + shown) + " |")
        print()


if __name__ == "__main__":
    main()
