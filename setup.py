from setuptools import find_packages, setup

setup(
    name="git-theta",
    version="0.3.0",
    description="Version-control machine-learning model checkpoints in git: per-parameter, content-addressed, exact, mergeable.",
    packages=find_packages(include=["git_theta", "git_theta.*"]),
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.24",
        "safetensors>=0.4",
        "zstandard>=0.22",
        "blake3>=0.4",
        "ml_dtypes>=0.3",
    ],
    extras_require={
        "torch": ["torch>=2.1"],
        "test": ["pytest>=7", "giftless>=0.6", "torch>=2.1"],
    },
    entry_points={
        "console_scripts": ["git-theta = git_theta.main:main"],
        "git_theta.checkpoints": [
            "safetensors = git_theta.checkpoints.safetensors:SafetensorsFormat",
        ],
        "git_theta.updates": [
            "dense = git_theta.updates.dense:DenseUpdate",
        ],
        "git_theta.merges": [
            "average = git_theta.merges.average:AverageStrategy",
            "base = git_theta.merges.pick:BaseStrategy",
            "dare = git_theta.merges.dare:DareStrategy",
            "ours = git_theta.merges.pick:OursStrategy",
            "slerp = git_theta.merges.slerp:SlerpStrategy",
            "task-arithmetic = git_theta.merges.task_arithmetic:TaskArithmeticStrategy",
            "theirs = git_theta.merges.pick:TheirsStrategy",
            "ties = git_theta.merges.ties:TiesStrategy",
            "weighted = git_theta.merges.weighted:WeightedStrategy",
        ],
    },
)
