"""An example merge strategy plugin for git-theta, installed from outside the core package."""
