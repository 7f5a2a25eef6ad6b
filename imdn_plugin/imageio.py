"""Old home of the image reader/writer; it now lives in :mod:`imdn_plugin.data.imageio`."""
from .data.imageio import *  # noqa: F401,F403
from .data.imageio import (  # noqa: F401
    Image,
    decode,
    encode_png,
    from_array,
    imdecode,
    read,
    write_atomic,
)
