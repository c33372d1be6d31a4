# In Colab or Binder, install vaekit if it is missing; anywhere else this does nothing.
import importlib.util
import os
import subprocess
import sys

if importlib.util.find_spec("vaekit") is None and (
    "google.colab" in sys.modules
    or "COLAB_RELEASE_TAG" in os.environ
    or any(name.startswith("BINDER_") for name in os.environ)
):
    url = "git+https://github.com/vaekit/vaekit@main"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", url], check=True)
    importlib.invalidate_caches()
