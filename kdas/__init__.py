"""kdas: KDAS-ReID architecture search for person re-identification, carried to deployment.

Importing `kdas` stays light (no torch) so that `kdas.runtime` can ship to an edge box alone.
"""

__version__ = "0.1.0"
