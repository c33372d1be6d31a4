"""Test-session settings that notebook kernels inherit: one thread each (two test workers share
the machine's cores), and smoke settings for the notebooks nbval executes."""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("VAEKIT_SMOKE", "1")
