"""``import rlvec_dump.auto``: installs the dump when $RLVEC_DUMP_DIR is set, does nothing otherwise."""

import os

if os.environ.get("RLVEC_DUMP_DIR", "").strip():
    from . import install

    install()
