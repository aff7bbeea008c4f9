"""`python -m videogen` is the same as the `videogen` console script."""

from videogen.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
