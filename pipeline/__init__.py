"""Harvest: world-cafe table notes in, a ranked output paper out.

The library is a set of small pure steps over typed pandas frames (see :mod:`pipeline.schema`);
``flows/`` orchestrates them with Prefect, ``cli.main`` is the command line face.
"""

__version__ = "0.1.0"
