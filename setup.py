"""parallax_nb: notebook-first, sparsity-aware data-parallel training (Parallax, EuroSys 2019).

Horovod must be built against the installed TensorFlow, so it is not an install_requires
entry: `scripts/setup_env.sh` (called by `make run` / `make test`) installs TensorFlow first
and then builds Horovod with Gloo. `pip install .[horovod]` works where TensorFlow is
already installed and CMake < 4 is on PATH.
"""
from setuptools import find_packages, setup

TENSORFLOW_CPU = ["tensorflow-cpu==2.18.1"]
CORE = [
    "tf_keras==2.18.0",
    "dask[distributed]>=2024.12",
    "distributed>=2024.12",
    "cloudpickle>=3.0",
    "numpy>=1.26,<2.1",
    "pandas>=2.1",
    "scipy>=1.11",
    "psutil>=5.9",
    "jinja2>=3.1",
    "ipywidgets>=8.1",
    "bokeh>=3.4",
    "jupyter_bokeh>=4.0",
    "tqdm>=4.66",
    "nvidia-ml-py>=12.535",
    "ipykernel>=6.29",   # the parallax_nb kernel spec (python -m parallax_nb.kernels install)
    "matplotlib>=3.8",   # the run report's partition-search plot (inline SVG)
]
TEST = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "nbval>=0.11",
    "jupyterlab>=4.2",
    "playwright>=1.45",
    "jupyterhub>=5.0",
    "jupyter-server-proxy>=4.1",   # the Dask dashboard behind the hub (docs/jupyterhub.md)
    "dask-gateway>=2026.3.0",      # tests/test_gateway.py: a real gateway on loopback, its
    "dask-gateway-server[local]>=2026.3.0",   # proxy and local backend (no Kubernetes)
]
# The documentation site (mkdocs.yml, `make docs`); the tests build it in strict mode.
DOCS = [
    "mkdocs>=1.6,<2",
    "mkdocs-material>=9.5",
    "mkdocstrings[python]>=0.26",
    "mkdocs-jupyter>=0.25",
]
TEST += DOCS

setup(
    name="parallax_nb",
    version="0.1.0",
    description="Notebook-first sparsity-aware data parallel training (Parallax) on Dask",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    # kernels/ is the package parallax_nb.kernels: its kernel spec is shipped from one place.
    packages=find_packages(include=["parallax_nb", "parallax_nb.*"]) + ["parallax_nb.kernels"],
    package_dir={"parallax_nb.kernels": "kernels"},
    package_data={"parallax_nb": ["templates/*.html.j2"],
                  "parallax_nb.kernels": ["parallax_nb/*"]},
    install_requires=TENSORFLOW_CPU + CORE,
    extras_require={
        "test": TEST,
        "docs": DOCS,
        # GPU users: `pip install parallax_nb[gpu]` pulls the CUDA build of the same TensorFlow;
        # Horovod then has to be built with HOROVOD_GPU_OPERATIONS=NCCL (see README).
        "gpu": ["tensorflow[and-cuda]==2.18.1"],
        "horovod": ["horovod==0.28.1"],
    },
    entry_points={"console_scripts": ["parallax-nb=parallax_nb.__main__:main"]},
)
