"""The photos a command reads: a folder of images or a split of image records, checked before any
model loads, streamed in name order and in chunks."""

from __future__ import annotations

from collections.abc import Iterator


def check_inputs(cfg) -> list[str]:
    """The input folder's image names (none for records), or one clear error before any model loads."""
    from runtime.storage import exists
    from tfrecords.layout import list_images
    from tfrecords.reader import list_shards

    if cfg.records:
        list_shards(cfg.records, cfg.split)  # the manifest's version and the split's shards
        return []
    if not exists(cfg.images):
        raise FileNotFoundError(f"--images {cfg.images}: no such folder")
    names = list_images(cfg.images)
    if not names:
        raise ValueError(f"--images {cfg.images}: no .jpg/.jpeg/.png images in it")
    return names


def inputs(cfg, failures: dict[str, str]) -> Iterator[tuple[str, bytes]]:
    """(name, JPEG bytes) of every input image, in name order; rejected ones go to ``failures``."""
    names = check_inputs(cfg)
    if cfg.records:
        from tfrecords.reader import parsed_records

        for e in parsed_records(cfg.records, cfg.split):
            yield e["image/filename"].numpy().decode(), e["image/encoded"].numpy()
        return
    from concurrent.futures import ThreadPoolExecutor

    from runtime.storage import join
    from tfrecords.images import PreparedImage, load_and_prepare

    with ThreadPoolExecutor(4) as pool:  # decoding in Pillow releases the GIL
        jobs = ((join(cfg.images, n), cfg.max_side, 80_000_000, 8) for n in names)
        for name, r in zip(names, pool.map(load_and_prepare, jobs), strict=True):
            if isinstance(r, PreparedImage):
                yield name, r.encoded
            else:
                failures[name] = r


def chunks(it: Iterator[tuple[str, bytes]], n: int) -> Iterator[tuple[list[str], list[bytes]]]:
    names, data = [], []
    for name, enc in it:
        names.append(name)
        data.append(enc)
        if len(names) == n:
            yield names, data
            names, data = [], []
    if names:
        yield names, data
