"""Which packages the distribution holds (everything else is in pyproject.toml).

Every package under bot/, plus the top-level overlays/ folder installed as `bot.overlay.pages`,
so the server reads its pages with importlib.resources from an editable install and from a
wheel alike. pyproject.toml cannot express this: `packages.find` does not combine with a
package mapped from another folder.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["bot", "bot.*"], exclude=["*__pycache__"]),
        "bot.overlay.pages",
    ],
    package_dir={"bot.overlay.pages": "overlays"},
)
