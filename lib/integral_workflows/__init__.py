"""Long-term INTEGRAL (IBIS/ISGRI, JEM-X) products through MMODA.

The helper library of the notebooks in ``notebooks/``.
"""

__version__ = "0.2.0"
