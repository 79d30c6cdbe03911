"""mallscore: nightly high-spender segments from a SQL warehouse, scored with ONNX.

Importing the package does no work: no file is opened, no folder created, and no
heavy library (scikit-learn, skl2onnx, matplotlib) is imported.
"""

__version__ = "0.1.0"
