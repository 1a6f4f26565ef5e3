"""Check the docs: every config key has an entry and every relative link resolves."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flask_heat_collector.config import KEYS  # noqa: E402


def main() -> int:
    problems = []
    config = (ROOT / "docs" / "configuration.md").read_text()
    problems += [f"docs/configuration.md lacks {key.name}" for key in KEYS if f"`{key.name}`" not in config]
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            if not (page.parent / target).exists():
                problems.append(f"{page.relative_to(ROOT)} links to missing {target}")
    print("\n".join(problems) or "docs ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
