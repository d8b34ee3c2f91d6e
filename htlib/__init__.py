"""htlib: a small PyTorch library behind the HyperTransformer notebooks.

Data flows one way: dataset -> episodes -> model (generate weights, run CNN)
-> loss/metrics -> results -> plots.
"""

__version__ = "0.1.0"
