"""Test-wide settings: offscreen Qt, and a private data cache so tests never touch ~/.cache."""

import os
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if "SSLWB_CACHE_DIR" not in os.environ:
    os.environ["SSLWB_CACHE_DIR"] = tempfile.mkdtemp(prefix="sslwb-test-cache-")
