"""Old home of the training-data preparation; it now lives in :mod:`imdn_plugin.data`.

Kept so that ``from imdn_plugin.dataprep import prepare_div2k`` (and the other
names) keeps working.
"""
from .data.div2k import (  # noqa: F401
    DEFAULT_CROP_SIZE,
    DEFAULT_STEP,
    DEFAULT_THRESH_SIZE,
    PREP_INFO_NAME,
    SubImage,
    default_mod,
    div2k_lmdb_names,
    extract_subimages,
    find_hr_images,
    find_lr_image,
    prepare_div2k,
    prepare_subimage_lmdbs,
    subimage_key,
    subimage_positions,
)
from .data.imageio import DEFAULT_COMPRESS_LEVEL, IMAGE_EXTENSIONS, read_image  # noqa: F401
from .data.imageio import png_bytes as encode_png  # noqa: F401
from .data.lmdb import (  # noqa: F401
    LmdbWriter,
    export_lmdb_to_folder,
    lmdb_is_complete,
    read_lmdb_image,
    read_meta_info,
    remove_stale_temporaries,
    validate_lmdb_pair,
    validate_pairs,
)
from .data.resize import bicubic_downscale, mod_crop  # noqa: F401
