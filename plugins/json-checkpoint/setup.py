from setuptools import setup

setup(
    name="git-theta-json-checkpoint",
    version="0.1.0",
    description="Example git-theta checkpoint format plugin: tensors as plain JSON, exact to the bit.",
    packages=["git_theta_json_checkpoint"],
    python_requires=">=3.9",
    install_requires=["git-theta>=0.3", "numpy>=1.24"],
    entry_points={"git_theta.checkpoints": ["json = git_theta_json_checkpoint:JsonFormat"]},
)
