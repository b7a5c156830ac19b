"""Moved: the dataset base classes are in :mod:`mixbench.data.base`, file reading and decoding
in :mod:`mixbench.data.io`, the per-sample pipeline in :mod:`mixbench.data.pipeline`. This
module keeps the old import path working."""

from .base import INDEX_DIR, INDEX_FORMAT, INDEX_VERSION, ImageFileDataset, TransformedDataset  # noqa: F401
from .io import (  # noqa: F401
    IMAGE_EXTENSIONS,
    JPEG_MAGIC,
    class_folder_samples,
    decode_batch,
    decode_bytes,
    decode_file,
    decode_one_jpeg,
    list_class_folders,
    list_image_files,
    parse_int,
    read_bytes,
    read_mat_struct,
    read_text_lines,
    resolve_decode_device,
    split_columns,
)
from .pipeline import V2_TRANSFORMS, build_pipeline, build_transform  # noqa: F401
