"""Type stubs of the stabspace extension module."""

import datetime
import os
import pathlib
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, "os.PathLike[str]"]
_Date = Union[str, datetime.date]

class Error(Exception):
    """Base class of the errors stabspace raises itself (bad input raises ValueError)."""

class IndexError(Error):
    """A partition file that cannot be used: not an index, an unsupported format version,
    truncated or corrupt. The message names the file."""

class DatabaseError(Error):
    """The database cannot be reached, lacks migrations, or a query on it failed."""

class Hits:
    """What a search returns, best first. One query: 1-D arrays of length k and a list of
    ids; a batch: arrays of shape (n, k) and a list of n id lists, where k is clamped to
    the partition's row count. Places a search left empty hold None, -1 and NaN."""

    @property
    def ids(self) -> Union[List[Optional[str]], List[List[Optional[str]]]]: ...
    @property
    def rows(self) -> npt.NDArray[np.int64]:
        """Row numbers in the partition file."""
    @property
    def cosine(self) -> npt.NDArray[np.float64]:
        """Cosine similarity to the query."""
    @property
    def euclidean(self) -> npt.NDArray[np.float64]:
        """Euclidean distance to the query, on the vectors as given."""
    @property
    def ef(self) -> Optional[int]:
        """The graph search's breadth, or None for an exact scan."""
    @property
    def answered_by(self) -> str:
        """How the hits were found: "index" (the graph) or "exact-scan" (every row)."""
    @property
    def partition_stale(self) -> Optional[bool]:
        """None: a partition file opened on its own knows no database. A Connection's
        frames carry answered_by and partition_stale columns for the database's view."""
    @property
    def admitted(self) -> Union[None, int, npt.NDArray[np.int64]]:
        """With a filter (known_before, shock_type, min_severity): how many rows it admitted
        (an int for one query, an array for a batch; 0: none was known before the date)."""
    def __len__(self) -> int: ...

class Partition:
    """An index partition file, memory-mapped: opening it reads only its header. Safe to
    share between threads; searches release the GIL. A file replaced while open (a
    rebuild) keeps answering from the old map until it is opened again."""

    def __init__(self, path: _Path, quantized: bool = True) -> None:
        """Open `path`. Raises FileNotFoundError, or stabspace.IndexError for a file that
        is not a usable partition. `quantized=False` traverses the graph on f32 vectors."""
    def __len__(self) -> int: ...
    @property
    def dim(self) -> int: ...
    @property
    def path(self) -> pathlib.Path: ...
    @property
    def ids(self) -> List[str]: ...
    @property
    def provenance(self) -> Any:
        """The JSON value the builder recorded (a dict for the CLI's partitions)."""
    @property
    def info(self) -> Dict[str, Any]:
        """Build parameters, format version, file size and recall calibration."""
    @property
    def traversal(self) -> Optional[str]:
        """'int8-per-dimension', 'f32', or None for a flat partition."""
    def verify(self) -> None:
        """Check every section's checksum; raises stabspace.IndexError on damage."""
    def ef_for(self, recall: float) -> Optional[int]:
        """The breadth calibrated for `recall` (None for a flat partition)."""
    def search(
        self,
        q: npt.ArrayLike,
        k: int = 10,
        ef: Optional[int] = None,
        recall: Optional[float] = None,
        *,
        known_before: Optional[_Date] = None,
        shock_type: Union[None, str, Sequence[str]] = None,
        min_severity: Union[None, float, str] = None,
    ) -> Hits:
        """The k nearest rows to one vector (1-D float32/float64). Without ef, the breadth
        calibrated for `recall` (default 0.95). known_before: only rows known strictly before
        that date (point-in-time); shock_type, min_severity: only those rows."""
    def search_batch(
        self,
        Q: npt.ArrayLike,
        k: int = 10,
        ef: Optional[int] = None,
        recall: Optional[float] = None,
        *,
        known_before: Union[None, _Date, Sequence[_Date]] = None,
        shock_type: Union[None, str, Sequence[str]] = None,
        min_severity: Union[None, float, str] = None,
    ) -> Hits:
        """The k nearest rows to each row of Q (n × dim), on the thread pool. known_before:
        one date for all rows of Q, or one per row."""
    def search_exact(self, q: npt.ArrayLike, k: int = 10) -> Hits:
        """Exact top-k by scanning every row, for one vector or a matrix of them."""
    def _time_search(
        self, q: npt.ArrayLike, k: int = 10, ef: Optional[int] = None, repeat: int = 1000
    ) -> float:
        """For benchmarks: seconds that `repeat` searches of q take inside Rust."""

def build(
    path: _Path,
    ids: Sequence[str],
    vectors: npt.ArrayLike,
    m: int = 16,
    ef_construction: int = 200,
    deterministic: bool = False,
    quantized: bool = True,
    provenance: Any = None,
    calibration_queries: Optional[npt.ArrayLike] = None,
) -> Dict[str, Any]:
    """Write a partition file atomically from distinct ids and an n × dim array.

    ``calibration_queries`` (q × dim): calibrate the recall on the queries you will send,
    besides held-out rows; searches then take their breadth from that calibration."""

class Connection:
    """An open database and the partitions under its data directory."""

    @property
    def database(self) -> str: ...
    @property
    def index_dir(self) -> pathlib.Path: ...
    def similar_scenarios(
        self,
        instrument_id: str,
        as_of: _Date,
        model_id: str = "joint-stab-fragility-v1",
        scenario_set_id: Optional[str] = None,
        top_k: int = 20,
        *,
        ef: Optional[int] = None,
        recall: Optional[float] = None,
        exact: bool = False,
        quantized: bool = True,
        point_in_time: bool = False,
        known_before: Optional[_Date] = None,
        shock_type: Union[None, str, Sequence[str]] = None,
        min_severity: Union[None, float, str] = None,
    ) -> Any:
        """find-similar-stab-scenarios: a pandas DataFrame (list of dicts without pandas)
        with columns rank, cosine, euclidean, scenario_set_id, scenario_id, scenario_as_of,
        instrument_id, as_of_date, answered_by, partition_stale, scenario_known_from.
        point_in_time=True: only scenarios known strictly before as_of."""
    def portfolio_exposure(
        self,
        portfolio_id: str,
        as_of: _Date,
        scenario_set_id: str,
        stab_model_id: str = "joint-stab-fragility-v1",
        top_k: int = 20,
        *,
        ef: Optional[int] = None,
        recall: Optional[float] = None,
        exact: bool = False,
        quantized: bool = True,
        min_coverage: float = 0.9,
        point_in_time: bool = False,
        known_before: Optional[_Date] = None,
        shock_type: Union[None, str, Sequence[str]] = None,
        min_severity: Union[None, float, str] = None,
    ) -> Any:
        """show-portfolio-stab-scenario-exposure: a pandas DataFrame (list of dicts without
        pandas) with columns cosine, euclidean, scenario_set_id, scenario_id, scenario_as_of,
        portfolio_id, portfolio_ctx_norm, num_instruments_used, weight_covered."""

def connect(
    database_url: Optional[str] = None,
    data_dir: Optional[_Path] = None,
    read_database_url: Optional[str] = None,
    partition_store: Optional[str] = None,
) -> Connection:
    """Open the database the CLI would use (database_url, else DATABASE_URL, else the
    embedded SQLite file under data_dir, else STABSPACE_DATA_DIR, else ./stabspace-data).
    Queries read read_database_url (else STABSPACE_READ_DATABASE_URL), a read replica,
    when one is named, and the partitions of partition_store (file://DIR, else
    STABSPACE_PARTITION_STORE, else data_dir/index)."""

