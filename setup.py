"""Shim for tools that want setup.py; all metadata lives in setup.cfg."""
from setuptools import setup

setup()
