from setuptools import setup

setup(
    name="git-theta-merge-median",
    version="0.1.0",
    description="Example git-theta merge strategy plugin: the element-wise median of the versions.",
    packages=["git_theta_merge_median"],
    python_requires=">=3.9",
    install_requires=["git-theta>=0.3", "numpy>=1.24"],
    entry_points={"git_theta.merges": ["median = git_theta_merge_median.median:MedianStrategy"]},
)
