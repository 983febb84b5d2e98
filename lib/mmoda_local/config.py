"""Configuration of a local MMODA server."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

#: Environment variable naming the default data directory of the local backend.
HOME_ENV = "MMODA_LOCAL_HOME"


def default_data_dir() -> Path:
    """Return the data directory used when none is given.

    ``$MMODA_LOCAL_HOME`` if set, else ``~/.cache/mmoda_local``.
    """
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    return Path.home() / ".cache" / "mmoda_local"


@dataclasses.dataclass
class FaultRates:
    """Probabilities of the faults the server injects, for reliability tests.

    Attributes
    ----------
    http_500 : float
        Fraction of ``run_analysis`` requests answered with HTTP 500 (the
        client raises ``DispatcherException``).
    drop_connection : float
        Fraction of ``run_analysis`` requests whose connection is closed
        without an answer (the client sees a ``ConnectionError``).
    stall_job : float
        Fraction of job executions that hang forever in ``progress``; a new
        submission (``query_status=new``) of the same job restarts it.
    fail_job : float
        Fraction of job executions that fail with an internal error
        (``RemoteException`` on the client); a new submission retries it.
    """

    http_500: float = 0.0
    drop_connection: float = 0.0
    stall_job: float = 0.0
    fail_job: float = 0.0

    def validate(self) -> None:
        """Raise ValueError if a rate is outside [0, 1]."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"fault rate {field.name}={value} must be within [0, 1]")

    @property
    def any(self) -> bool:
        """True if any fault can happen."""
        return any(getattr(self, f.name) > 0 for f in dataclasses.fields(self))


@dataclasses.dataclass
class ServerConfig:
    """Everything that shapes a local MMODA server's behaviour.

    Attributes
    ----------
    data_dir : Path
        Holds the server's secret, the ScW archive cache, finished job
        results and the state file.
    seed : int
        Seed of the simulated sky's noise: the same request gives the same
        bytes for the same seed.
    latency_per_scw_s : float
        Compute time added per ScW, so that a 50-ScW job takes measurable time
        and concurrency matters as on the real service.
    workers : int
        Jobs computed at the same time; the others wait in the queue.
    faults : FaultRates
        Injected faults.
    body_fluxes_mcrab : dict
        Flux injected at solar-system bodies (name → mCrab); 0 by default
        (real Jupiter is at the µCrab level).
    debug_instruments : bool
        Also serve the dispatcher's test instruments ``empty``,
        ``empty-async`` and ``empty-semi-async`` (as the real one does in
        debug mode), used to replay captured exchanges and to run oda_api's
        own tests.
    archive_cache_dir : Path or None
        Where the simulated ScW archive is cached; ``<data_dir>/cache`` by
        default (tests share one to build it once).
    scw_failure_policy : str
        What a job holding ScWs that cannot be analysed does: ``skip-scw``
        (default, as the real backend: the ScW's analysis exception is
        reported in the job monitor and the products come from the other
        ScWs) or ``fail-job`` (the whole job fails naming them; a backend
        behaviour clients must survive too).
    injected_grbs : list of dict
        Simulated gamma-ray bursts added to the SPI-ACS data, each
        ``{"t0", "fluence", "duration", "spectrum", "ra", "dec"}`` (see
        ``mmoda_local.spiacs.parse_grb_injection``; ``--inject-grb``).
    injected_sources : list of dict
        Point sources added to the simulated sky, each ``{"name", "ra",
        "dec", "flux_mcrab", "index", "shape"}`` (``index`` 2.0 and
        ``shape`` ``constant`` by default; see
        ``mmoda_local.sky.normalise_injected_source``; ``--inject-source``).
    gallery_max_upload_bytes : int
        Largest body a gallery write accepts, counted as it streams in (a
        chunked body without ``Content-Length`` too); past it the answer is
        413 and nothing is stored. 512 MiB by default
        (``--gallery-max-upload-mib``).
    """

    data_dir: Path = dataclasses.field(default_factory=default_data_dir)
    seed: int = 0
    latency_per_scw_s: float = 0.0
    workers: int = 2
    faults: FaultRates = dataclasses.field(default_factory=FaultRates)
    body_fluxes_mcrab: dict = dataclasses.field(default_factory=dict)
    debug_instruments: bool = False
    archive_cache_dir: Path | None = None
    scw_failure_policy: str = "skip-scw"
    injected_grbs: list = dataclasses.field(default_factory=list)
    injected_sources: list = dataclasses.field(default_factory=list)
    gallery_max_upload_bytes: int = 512 * 1024 * 1024

    def __post_init__(self):
        self.data_dir = Path(self.data_dir).expanduser()
        if isinstance(self.faults, dict):
            self.faults = FaultRates(**self.faults)
        self.faults.validate()
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be at least 1")
        if self.latency_per_scw_s < 0:
            raise ValueError(f"latency_per_scw_s={self.latency_per_scw_s} must be >= 0")
        if self.gallery_max_upload_bytes < 1:
            raise ValueError(f"gallery_max_upload_bytes={self.gallery_max_upload_bytes} must be at least 1")
        if self.scw_failure_policy not in ("skip-scw", "fail-job"):
            raise ValueError(f"scw_failure_policy={self.scw_failure_policy!r} must be 'skip-scw' or 'fail-job'")
        from .sky import normalise_injected_source

        self.injected_sources = [normalise_injected_source(dict(entry)) for entry in self.injected_sources]

    @property
    def jobs_dir(self) -> Path:
        """Folder of finished job results (the server's cache)."""
        return self.data_dir / "jobs"

    @property
    def cache_dir(self) -> Path:
        """Folder of derived data (the ScW archive)."""
        return Path(self.archive_cache_dir) if self.archive_cache_dir else self.data_dir / "cache"

    def secret(self) -> str:
        """Return the server's JWT signing secret, creating it on first use.

        The secret never leaves the data directory (file mode 0600).
        """
        path = self.data_dir / "secret_key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            log.info("created a new token secret in %s", path)
        return path.read_text().strip()

    def describe(self) -> dict:
        """Return a JSON-serialisable description (no secret)."""
        return {
            "data_dir": str(self.data_dir),
            "seed": self.seed,
            "latency_per_scw_s": self.latency_per_scw_s,
            "workers": self.workers,
            "faults": dataclasses.asdict(self.faults),
            "body_fluxes_mcrab": dict(self.body_fluxes_mcrab),
            "debug_instruments": self.debug_instruments,
            "archive_cache_dir": str(self.cache_dir),
            "scw_failure_policy": self.scw_failure_policy,
            "injected_grbs": [dict(grb) for grb in self.injected_grbs],
            "injected_sources": [dict(source) for source in self.injected_sources],
            "gallery_max_upload_bytes": self.gallery_max_upload_bytes,
        }

    @classmethod
    def from_json_file(cls, path: Path | str, **overrides) -> ServerConfig:
        """Read a configuration from a JSON file, then apply ``overrides``."""
        values = json.loads(Path(path).read_text())
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)
