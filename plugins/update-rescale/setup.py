from setuptools import setup

setup(
    name="git-theta-update-rescale",
    version="0.1.0",
    description="Example git-theta update type plugin: a parameter stored as its previous value times one factor.",
    packages=["git_theta_update_rescale"],
    python_requires=">=3.11",
    install_requires=["git-theta>=0.3", "numpy>=1.24"],
    entry_points={"git_theta.updates": ["rescale = git_theta_update_rescale:ScaleUpdate"]},
)
