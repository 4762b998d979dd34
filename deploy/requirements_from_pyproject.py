"""Print the requirements of pyproject.toml's dependencies plus the named extras, one a line (image builds).

Usage: python requirements_from_pyproject.py pyproject.toml ml,train,aws
Kept apart from batchlane's own code so the image installs its dependencies in a layer of their own, cached while
only the source changes.
"""

import sys
import tomllib


def main(pyproject: str, extras: str) -> None:
    with open(pyproject, "rb") as stream:
        project = tomllib.load(stream)["project"]
    optional = project.get("optional-dependencies", {})
    wanted = [name.strip() for name in extras.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in optional]
    if unknown:
        sys.exit(
            f"EXTRAS: unknown extra(s) {', '.join(unknown)}; pyproject.toml has {', '.join(sorted(optional))}"
        )
    requirements = list(project.get("dependencies", []))
    for name in wanted:
        requirements.extend(optional[name])
    print("\n".join(dict.fromkeys(requirements)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
