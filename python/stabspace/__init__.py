"""stabspace from Python: open index partitions and query them from numpy,
build partitions from numpy arrays, and run the nearest-scenario workflows on
the database the CLI uses.

>>> import numpy as np, stabspace
>>> p = stabspace.Partition("stabspace-data/index/joint-stab-fragility-v2/SET.stabidx")
>>> hits = p.search_batch(np.random.rand(1000, p.dim).astype(np.float32), k=10)
>>> hits.ids[0], hits.cosine.shape          # list of ids, (1000, 10) float64

Bad input raises ValueError; a damaged or truncated partition raises
stabspace.IndexError (a subclass of stabspace.Error, not of the builtin
IndexError); a database failure raises stabspace.DatabaseError.
"""

from ._stabspace import (
    Connection,
    DatabaseError,
    Error,
    Hits,
    IndexError,
    Partition,
    __version__,
    build,
    connect,
)

__all__ = [
    "Connection",
    "DatabaseError",
    "Error",
    "Hits",
    "IndexError",
    "Partition",
    "__version__",
    "build",
    "connect",
]
