from setuptools import setup

setup(
    name="git-theta-update-scale",
    version="0.1.0",
    description="Example git-theta update type plugin: a parameter stored as its previous value times one factor.",
    packages=["git_theta_update_scale"],
    python_requires=">=3.11",
    install_requires=["git-theta>=0.3", "numpy>=1.24"],
    entry_points={"git_theta.updates": ["scale = git_theta_update_scale:ScaleUpdate"]},
)
