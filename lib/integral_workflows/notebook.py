"""What every notebook does around its science: one ``setup`` call after the parameters, one record at the end.

In the cell after the ``parameters`` cell::

    from integral_workflows import notebook
    run = notebook.setup(globals(), "mosaic")

validates the parameters (every problem at once), stops on a parameter the notebook does not
declare (papermill injects any ``-p NAME VALUE`` it is given), opens the MMODA session, shows the
SIMULATED banner and resolves the target. At the end, ``run.record_outputs(products, ...)`` records
the products' descriptors in the step record the pipeline and the gallery read.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from . import parameters, provenance
from .parameters.errors import ParameterError, closest_names, is_token_name, token_name_problem
from .products import Product, Products, all_files

log = logging.getLogger(__name__)

#: Globals IPython (and Jupyter) define in every kernel; never parameters.
IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})

_LITERAL_TYPES = (str, int, float, bool, type(None))


def _is_literal(value: Any) -> bool:
    # What a parameters cell or papermill's injected cell can hold: literals and containers of literals.
    if isinstance(value, _LITERAL_TYPES):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_literal(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_literal(item) for key, item in value.items())
    return False


def undeclared_parameters(namespace: Mapping[str, Any], notebook: str) -> list[str]:
    """The literal-valued globals of a notebook that are neither its parameters nor IPython's.

    Called right after the ``parameters`` cell and papermill's ``injected-parameters`` cell, these are
    the parameters papermill was given that the notebook does not declare (a typo such as
    ``detection_treshold``): papermill would otherwise inject them and run with the defaults.

    Parameters
    ----------
    namespace : mapping
        The notebook's ``globals()``.
    notebook : str
        The notebook name.

    Returns
    -------
    list of str
        The undeclared names, in definition order.
    """
    declared = set(parameters.declared_names(notebook))
    return [
        name
        for name, value in namespace.items()
        if not name.startswith("_") and name not in declared and name not in IPYTHON_NAMES and _is_literal(value)
    ]


def parameters_from(namespace: Mapping[str, Any], notebook: str) -> BaseModel:
    """Validate the parameters a notebook's globals hold; refuse undeclared ones with the closest names.

    Parameters
    ----------
    namespace : mapping
        The notebook's ``globals()`` after its ``parameters`` (and injected) cell.
    notebook : str
        The notebook name.

    Returns
    -------
    pydantic.BaseModel
        The notebook's validated model.

    Raises
    ------
    ParameterError
        Every problem at once: undeclared names (``did you mean ...``), tokens, wrong values, a
        ``src_name`` whose known position is farther than ``radius`` from non-zero RA/DEC.
    """
    declared = parameters.declared_names(notebook)
    problems, names = [], []
    for name in undeclared_parameters(namespace, notebook):
        names.append(name)
        if is_token_name(name):
            problems.append(token_name_problem(name))
            continue
        close = closest_names(name, declared)
        hint = (
            f"did you mean {' or '.join(map(repr, close))}?" if close else f"the parameters are {', '.join(declared)}"
        )
        # In JupyterLab, a variable left by cells run earlier looks the same: restarting the kernel clears it.
        problems.append(
            f"{name!r} is not a parameter of notebook {notebook} (given with papermill -p {name}, or left "
            f"from an earlier run of the notebook's cells?): {hint}"
        )
    given = {name: namespace[name] for name in declared if name in namespace}
    try:
        model = parameters.validate(notebook, given)
    except ParameterError as error:
        problems += error.problems
        names += error.names
        model = None
    # src_name against RA/DEC (targets.position_problems), on the raw values when the model failed, so that
    # every problem is reported at once.
    for position_names, problem in _position_problems(model if model is not None else given):
        problems.append(problem)
        names += position_names
    if problems:
        raise ParameterError(problems, names=names)
    return model


def _position_problems(values: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    if "RA" not in values or "src_name" not in values:
        return []
    from . import targets

    return targets.position_problems(values)


@dataclasses.dataclass
class NotebookRun:
    """One run of a notebook: its validated parameters, MMODA session, target and output folder.

    Attributes
    ----------
    name : str
        The notebook (step) name.
    params : pydantic.BaseModel
        The validated parameters.
    session : integral_workflows.session.Session or None
        The MMODA session (None for notebooks that send no request).
    out : Path
        The output folder (created).
    target : integral_workflows.targets.Target or None
        The resolved target, for notebooks that have one.
    """

    name: str
    params: BaseModel
    session: Any
    out: Path
    target: Any = None

    @property
    def simulated(self) -> bool:
        """Whether the products come from the local MMODA's simulated sky."""
        return bool(self.session is not None and self.session.simulated)

    def provenance(self, **keywords: Any) -> dict:
        """The FITS provenance cards of this run's products (:func:`integral_workflows.provenance.fits_provenance`)."""
        cards = {"notebook": f"{self.name}.ipynb", "parameters": parameters.to_papermill(self.params)}
        if self.target is not None and not self.target.is_moving:
            cards.update(src_name=self.target.name, ra_deg=self.target.ra, dec_deg=self.target.dec)
        elif self.target is not None:
            cards.update(src_name=self.target.name)
        cards.update(keywords)
        return provenance.fits_provenance(**cards)

    def selection_parameters(self) -> dict:
        """The run's parameters with the resolved target position: what the ScW selection reads."""
        values = parameters.to_papermill(self.params)
        if self.target is not None and not self.target.is_moving:
            values.update(RA=self.target.ra, DEC=self.target.dec)
        return values

    def select_scws(self):
        """Select the run's ScWs here (ScW-list query and cuts), for a fixed source or along a body's track.

        Returns
        -------
        (astropy.table.Table, integral_workflows.scw.CutReport)
            The selected ScWs and the cuts' report.
        """
        from . import scw

        if self.target is not None and self.target.is_moving:
            from . import moving

            return moving.select_body_scws(self.selection_parameters(), body=self.target.name, session=self.session)
        return scw.select_scws(self.selection_parameters(), session=self.session)

    def scw_table(self, *, show_report: bool = True):
        """The run's ScWs: ``scw_table_file`` (an earlier scw_selection step's) when given, else selected here.

        Parameters
        ----------
        show_report : bool
            Show the cut report of a selection made here.

        Returns
        -------
        astropy.table.Table
            The selected ScWs (``scw.read_scw_table`` columns).
        """
        from . import scw

        if self.params.get("scw_table_file"):
            return scw.read_scw_table(self.params.scw_table_file)
        table, report = self.select_scws()
        if show_report:
            _show(report.to_markdown())
        return table

    def write_table(self, table, name: str, *, kind: str = "table", **facts: Any) -> Product:
        """Write an astropy table into the output folder (ECSV) and describe it."""
        path = self.out / name
        table.write(path, overwrite=True)
        return Product(path=path, kind=kind, **facts)

    def write_jobs(self, record, name: str) -> Product:
        """Write the fate of every ScW of a jobs record (``record.outcome_table()``) and describe it."""
        return self.write_table(record.outcome_table(), name, kind="jobs")

    def save_figure(self, figure, name: str, *, dpi: int = 120) -> Product:
        """Save a matplotlib figure into the output folder (PNG) and describe it."""
        path = self.out / name
        figure.savefig(path, dpi=dpi, bbox_inches="tight")
        return Product(path=path, kind="plot")

    def record_outputs(
        self, products: Sequence[Product], *, jobs: Any = None, extra: Mapping[str, Any] | None = None
    ) -> Products:
        """Record the products (descriptors and files) in ``<out>/<name>.step.json``: the notebook's last act.

        Parameters
        ----------
        products : sequence of Product
            What the notebook made (the science modules' writers return them).
        jobs : RunRecord or mapping, optional
            The MMODA jobs summary.
        extra : mapping, optional
            Other facts worth keeping (JSON-safe).

        Returns
        -------
        Products
            The products, for the ``outputs`` cell (``products.path("image")``).
        """
        products = Products(products)
        provenance.record_step(
            self.name,
            output_dir=self.out,
            products=all_files(products),
            jobs=jobs,
            parameters=parameters.to_papermill(self.params),
            extra={**dict(extra or {}), "simulated": self.simulated},
            descriptors=[product.as_dict(relative_to=self.out) for product in products],
        )
        return products

    def upload_to_gallery(self) -> list:
        """Upload the recorded products to the gallery of ``host_type`` (``upload_to_gallery = True``).

        Call it after :meth:`record_outputs`: the upload reads what was recorded
        (:func:`integral_workflows.gallery.upload_run_products`). A pipeline that uploads after the
        notebook (a hook, with the complete executed notebook attached) runs it with
        ``upload_to_gallery = False``.

        Returns
        -------
        list of integral_workflows.gallery.UploadResult
        """
        from . import gallery

        return gallery.upload_run_products(self.out, steps=[self.name])


def _show(markdown: str) -> None:
    try:
        from IPython.display import Markdown, display
    except ImportError:  # outside Jupyter the log says it
        log.warning("%s", markdown)
        return
    display(Markdown(markdown))


def setup(namespace: Mapping[str, Any], notebook: str, *, connect: bool = True) -> NotebookRun:
    """Start a notebook run: validate its parameters, open the MMODA session, show where the data come from.

    Parameters
    ----------
    namespace : mapping
        The notebook's ``globals()``, right after its ``parameters`` cell (and papermill's injected one).
    notebook : str
        The notebook name (``"mosaic"``).
    connect : bool
        Open an MMODA session for ``host_type`` (the local MMODA is started if needed).

    Returns
    -------
    NotebookRun
        Parameters, session, target and output folder.

    Raises
    ------
    ParameterError
        Every problem of the parameters at once, including names the notebook does not declare
        (with the closest valid name).
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    params = parameters_from(namespace, notebook)
    session = None
    if connect:
        from .session import Session

        session = Session(params.host_type)
        if session.simulated:
            _show(session.simulated_banner())
    target = _resolve_target(params, notebook)
    # gallery_upload: an empty output_dir means the run folder it reads
    out = Path(params.output_dir or params.get("run_folder") or ".")
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"**{notebook}**: {session!r}" if session is not None else f"**{notebook}**"]
    if target is not None:
        lines.append(_describe_target(target))
    _show("\n\n".join(lines))
    return NotebookRun(name=notebook, params=params, session=session, out=out, target=target)


def _resolve_target(params: BaseModel, notebook: str):
    from . import targets

    if "src_name" not in type(params).model_fields:
        return None
    if "RA" not in type(params).model_fields:
        target = targets.resolve_name(params.src_name, online=False)
        if not target.is_moving:
            raise ParameterError(
                f"src_name = {params.src_name!r} is not a solar-system body: notebook {notebook} "
                "stacks moving targets (use the mosaic notebook for fixed sources)",
                names=["src_name"],
            )
        return target
    return targets.coordinates_for(params)


def _describe_target(target) -> str:
    if target.is_moving:
        return f"{target.name}: a solar-system body, followed along its track"
    return f"{target.name}: RA {target.ra:.4f}°, Dec {target.dec:.4f}° ({target.source})"
