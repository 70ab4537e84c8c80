"""``fairl configs``: list the shipped YAMLs, or print one to copy."""

from __future__ import annotations

import sys
from pathlib import Path

from fairl_ray.commands.common import fail


def add_parser(sub) -> None:
    """``fairl configs``: its arguments and help."""
    parser = sub.add_parser(
        "configs",
        help="list the shipped experiment and search YAMLs, or print one to copy",
        description="Without NAME: each shipped YAML with its first comment line. With NAME (e.g. "
        "fa_irl_table1 or fa_irl_table1.yaml): print that file, e.g. `fairl configs default > my.yaml`.",
    )
    parser.add_argument("name", nargs="?", help="a shipped config to print")
    parser.set_defaults(func=run)


def run(args) -> int:
    from fairl_ray.config import tune_configs_dir

    root = tune_configs_dir()
    shipped = sorted(root.glob("*.yaml")) + sorted(root.glob("studies/*.yaml"))  # experiments, then `fairl study`'s
    if args.name is None:
        width = max(len(str(p.relative_to(root))) for p in shipped)
        for path in shipped:
            print(f"{str(path.relative_to(root)):<{width}}  {_first_comment(path)}")
        print(f"\n[fairl] in {tune_configs_dir()}; `fairl configs NAME > my.yaml` copies one")
        return 0
    name = args.name if args.name.endswith(".yaml") else f"{args.name}.yaml"
    path = root / name
    if path not in shipped:
        names = ", ".join(str(p.relative_to(root).with_suffix("")) for p in shipped)
        return fail(f"no shipped config {args.name!r}; choose one of: {names}")
    sys.stdout.write(path.read_text(encoding="utf-8"))
    return 0


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""
