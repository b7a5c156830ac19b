"""Check a benchmark dataset's layout, or write its cached index.

    tools/prepare_data.py check DATASET ROOT [--no-files]
        For every split: the number of images and classes against the official counts,
        and what is missing (a list file, a folder, listed images absent from disk). It
        reads the data as training will: a corrupt or truncated file, or a label outside
        the classes, fails the split with the file's name.
        Exit status 1 when anything is missing or a count differs.
    tools/prepare_data.py index DATASET ROOT
        List every split once and write ROOT/mixbench_index/<Dataset>_<split>_<key>.json;
        the dataset then reads that file instead of listing folders or parsing large
        annotation files on every run.

DATASET is a short name of mixbench/data/catalog.py: cifar10, cifar100, fashion_mnist,
tiny_imagenet, imagenet1k, imagenet100, cub200, aircraft, stanford_cars, inat2017, inat2018,
places205, and digits (shipped with scikit-learn: it takes no ROOT).
The installed package runs the same as ``mixbench-prepare-data``.
"""

from __future__ import annotations

import argparse
import sys

from mixbench.cli import needs_training_stack


def dataset_class(entry):
    import mixbench.data  # noqa: F401  (registers the datasets)
    from mixbench.registry import DATASETS

    return DATASETS.get(entry.type)


def build(entry, root: str | None, split: str, **kwargs):
    if root is not None:
        kwargs["root"] = root
    return dataset_class(entry)(split=split, **entry.kwargs, **kwargs)


def takes_root(entry) -> bool:
    import inspect

    return "root" in inspect.signature(dataset_class(entry)).parameters


def check(name: str, root: str | None, files: bool = True) -> int:
    from mixbench.data.catalog import catalog_entry
    from mixbench.data.io import DatasetError

    entry = catalog_entry(name)
    problems = 0
    print(f"{name} ({entry.type})" + (f" under {root}" if root is not None else ""))
    for split, expected in entry.counts.items():
        kwargs = {"use_index": False} if _is_file_dataset(entry) else {}
        try:
            ds = build(entry, root, split, **kwargs)
        except DatasetError as e:
            print(f"  {split:9s} {'MISSING' if 'not found' in str(e) else 'FAILED ':7s}  {e}")
            problems += 1
            continue
        n, k = len(ds), len(ds.classes)
        ok_count = expected is None or n == expected
        official_classes = entry.classes_with(entry.kwargs)
        ok_classes = k == official_classes
        status = "ok" if ok_count and ok_classes else "DIFFERS"
        exp = "unchecked" if expected is None else f"{expected}"
        print(
            f"  {split:9s} {status:8s} {n} images (official {exp}), {k} classes (official {official_classes})"
        )
        problems += not (ok_count and ok_classes)
        if files and hasattr(ds, "missing_files"):
            missing = ds.missing_files()
            if missing:
                problems += 1
                shown = ", ".join(str(p) for p in missing[:5])
                print(f"  {'':9s} MISSING  {len(missing)} listed images are not on disk, e.g. {shown}")
    print("all present" if not problems else f"{problems} problem(s)")
    return 1 if problems else 0


def _is_file_dataset(entry) -> bool:
    from mixbench.data.base import ImageFileDataset

    return issubclass(dataset_class(entry), ImageFileDataset)


def index(name: str, root: str | None) -> int:
    from mixbench.data.catalog import catalog_entry

    entry = catalog_entry(name)
    if not _is_file_dataset(entry):
        print(f"{name} is read from a few archive files into memory; it needs no index.")
        return 0
    for split in entry.counts:
        ds = build(entry, root, split, use_index=False)
        path = ds.write_index()
        print(f"{split}: {len(ds)} images, {len(ds.classes)} classes -> {path}")
    return 0


@needs_training_stack("mixbench-prepare-data")
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["check", "index"])
    p.add_argument("dataset", help="short name, e.g. cub200")
    p.add_argument("root", nargs="?", help="the dataset folder (or its parent); none for digits")
    p.add_argument(
        "--no-files", action="store_true", help="check: do not test that every listed image exists (faster)"
    )
    args = p.parse_args(argv)
    try:
        from mixbench.data.catalog import catalog_entry

        needs_root = takes_root(catalog_entry(args.dataset))
        if needs_root and args.root is None:
            p.error(f"{args.dataset} is read from files: give ROOT, the dataset folder (or its parent)")
        if not needs_root and args.root is not None:
            p.error(f"{args.dataset} reads no files (scikit-learn ships it): leave out ROOT")
        if args.command == "check":
            return check(args.dataset, args.root, files=not args.no_files)
        return index(args.dataset, args.root)
    except KeyError as e:
        print(e.args[0], file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
