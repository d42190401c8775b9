import runpy
from pathlib import Path

from setuptools import Extension, find_packages, setup

# One list of built-in plugins, shared with git_theta.plugins (read as a file: the package is not installed yet).
BUILTIN_PLUGINS = runpy.run_path(str(Path(__file__).resolve().parent / "git_theta" / "builtin_plugins.py"))[
    "BUILTIN_PLUGINS"
]

setup(
    name="git-theta",
    version="0.3.0",
    description=(
        "Version-control machine-learning model checkpoints in git: per-parameter, content-addressed, exact, mergeable."
    ),
    packages=find_packages(include=["git_theta", "git_theta.*"]),
    # PEP 561: plugin packages type-check against git-theta's own annotations (base classes, plugins.checkpoint()...).
    package_data={"git_theta": ["py.typed", "_bytegroup.h"]},  # the header: a source build compiles with it
    # `git theta --help` runs `man git-theta`; man looks in ../share/man of each bin/ on PATH (a venv's too).
    data_files=[("share/man/man1", ["docs/man/git-theta.1"])],
    python_requires=">=3.11",
    # Optional: without a C compiler (or libzstd's header) the package installs and each extension's Python fallback
    # does the same work, slower (git_theta.bytegroup, chainops, metaparse, densecodec, display/view, safetensors).
    ext_modules=[
        Extension(
            "git_theta._bytegroup",
            ["git_theta/_bytegroup.c"],
            depends=["git_theta/_bytegroup.h"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension("git_theta._crc32c", ["git_theta/_crc32c.c"], extra_compile_args=["-O3"], optional=True),
        Extension("git_theta._chainops", ["git_theta/_chainops.c"], extra_compile_args=["-O3"], optional=True),
        Extension("git_theta._viewrows", ["git_theta/_viewrows.c"], extra_compile_args=["-O3"], optional=True),
        Extension("git_theta._stheader", ["git_theta/_stheader.c"], extra_compile_args=["-O3"], optional=True),
        Extension("git_theta._metaparse", ["git_theta/_metaparse.c"], extra_compile_args=["-O3"], optional=True),
        # Links the system libzstd, for decoding only (git_theta/densecodec.py); without it checkout decodes in Python.
        Extension(
            "git_theta._densecodec",
            ["git_theta/_densecodec.c"],
            depends=["git_theta/_bytegroup.h"],  # ungroup_bytes, shared with _bytegroup.c
            libraries=["zstd"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ],
    install_requires=[
        "numpy>=1.24",
        "safetensors>=0.4",
        "zstandard>=0.22",
        "blake3>=0.4",
        "ml_dtypes>=0.3",
    ],
    extras_require={
        "torch": ["torch>=2.1"],
        "mergekit": ["pyyaml>=6"],  # git theta merge --mergekit-config
        # giftless's own package declares none of its dependencies: the LFS server of tests/transfer needs these
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",
            "pexpect>=4.8",
            "mypy>=1.10",
            "giftless>=0.6",
            "torch>=2.1",
            "flask>=2.3",
            "flask-marshmallow>=0.15",
            "flask-classful>=0.16",
            "marshmallow>=3.21,<4",
            "webargs>=8.4,<9",
            "figcan>=0.0.4",
            "pyjwt>=2.8",
            "cachetools>=5",
            "python-dotenv>=1.0",
            "pyyaml>=6",
            "python-dateutil>=2.8",
            "hypothesis>=6",
            "gguf>=0.17",  # GGUF test files are written and cross-read by the gguf package (GGUFWriter/Reader)
            "onnx>=1.16",
            "flax>=0.8",
            "msgpack>=1.0",
            "optax>=0.2",
            "orbax-checkpoint>=0.11",
            "tensorflow-cpu>=2.16",
            # side-loaded adapters are checked against PEFT's own merge_and_unload(), a migrated HF-shaped
            # repository against transformers' from_pretrained (tests/sideload/peft_merge_test.py and others)
            "peft>=0.13",
            "transformers>=4.40",
            "ruff==0.17.6",  # pinned: tests/lint_test.py checks formatting, which changes between ruff versions
        ],
    },
    entry_points={
        "console_scripts": ["git-theta = git_theta.main:main", "git-theta-textconv = git_theta.commands.textconv:main"],
        **{
            group: [f"{name} = {target}" for name, target in plugins.items()]
            for group, plugins in BUILTIN_PLUGINS.items()
        },
    },
)
