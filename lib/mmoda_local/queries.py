"""Instruments, products and their parameters, as the real dispatcher declares them.

This module answers ``api/par-names`` and ``api/meta-data`` and turns the raw
values of a ``run_analysis`` request into a normalised parameter set
(defaults filled, types parsed, values checked) whose hash is the job id.
Invalid values raise :class:`QueryError`, which the server answers with HTTP
400 in the real dispatcher's shape.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re

from astropy.time import Time

log = logging.getLogger(__name__)

_STR = ("http://www.w3.org/2001/XMLSchema#str", "http://odahub.io/ontology#String")
_ANGLE = ("http://odahub.io/ontology#Angle",)
_ENERGY = ("http://odahub.io/ontology#Energy", "http://odahub.io/ontology#Frequency")
_INT = ("http://www.w3.org/2001/XMLSchema#int", "http://odahub.io/ontology#Integer")
_FLOAT = ("http://www.w3.org/2001/XMLSchema#float", "http://odahub.io/ontology#Float")

#: Keys the client adds to every request; kept in ``analysis_parameters`` but not parameters of a query.
API_KEYS = (
    "instrument",
    "product_type",
    "query_type",
    "off_line",
    "query_status",
    "session_id",
    "api",
    "oda_api_version",
    "job_id",
)
#: Keys the real dispatcher pops and ignores.
IGNORED_KEYS = ("dry_run", "async_dispatcher", "client-name", "return_progress", "use_scws")
#: Keys that do not enter the job id (plus the token, replaced by its user).
NOT_HASHED = (
    "session_id",
    "job_id",
    "token",
    "dry_run",
    "oda_api_version",
    "api",
    "off_line",
    "query_status",
    "async_dispatcher",
)

#: The missing-value marker of oda_api (a NUL character).
NONE_MARKER = "\x00"

OSA_BASE_VERSIONS = ("OSA10.2", "OSA11.2")
#: Obsolete base versions and the one to use instead (dispatcher-plugin-integral osa_common_pars.py).
OSA_OBSOLETE_VERSIONS = {"OSA11.0": "OSA11.2", "OSA11.1": "OSA11.2"}
OSA_MODIFIERS = ("fullbkg", "jemxnrt", "rmfoffsetv1")
SCW_ID_PATTERN = re.compile(r"^(\d{12})\.(\d{3})$")


class QueryError(ValueError):
    """A request the dispatcher does not understand (HTTP 400)."""

    def __init__(self, message: str, *, kind: str = "RequestNotUnderstood"):
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One parameter of a query.

    Attributes
    ----------
    name : str
        Name on the wire.
    kind : str
        ``str``, ``float``, ``int``, ``time``, ``list`` or ``raw`` (kept as sent).
    default : object
        Value when the request does not carry the parameter.
    units : str or None
        As shown by ``api/meta-data``.
    optional : bool
        Whether the value may be None.
    owl_uri : tuple of str
        Ontology terms shown by ``api/meta-data``.
    allowed : tuple or None
        Allowed values, if restricted.
    companion : bool
        A format companion (``T_format``, ``time_bin_format``): shown without restrictions.
    public : bool
        Listed by ``api/par-names`` (the real one hides ``user_catalog``).
    in_meta : bool
        Listed by ``api/meta-data``: a units companion (``units_name``, e.g. the
        echo product's ``energy_units``) is an argument but the real dispatcher
        does not describe it.
    """

    name: str
    kind: str
    default: object
    units: str | None = None
    optional: bool = False
    owl_uri: tuple = ()
    allowed: tuple | None = None
    companion: bool = False
    public: bool = True
    in_meta: bool = True

    def meta(self) -> dict:
        """Description as in ``api/meta-data``."""
        entry = {"name": self.name, "units": self.units, "value": self.default}
        if self.companion:
            return entry
        restrictions = {"is_optional": self.optional}
        if self.allowed is not None:
            restrictions["allowed_values"] = list(self.allowed)
        entry["restrictions"] = restrictions
        if self.owl_uri:
            entry["owl_uri"] = list(self.owl_uri)
        return entry

    def parse(self, raw):
        """Convert a raw request value (string, list or None) into this parameter's type."""
        if raw is None or raw == NONE_MARKER:
            if not self.optional:
                raise QueryError(f"Non-optional parameter {self.name} is set to None")
            return None
        if self.kind == "raw":
            return raw
        if self.kind == "list":
            return _parse_list(self.name, raw)
        if isinstance(raw, list):
            if len(raw) != 1:
                raise QueryError(f"parameter {self.name} must have one value, got {raw}")
            raw = raw[0]
        if self.kind == "float":
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise QueryError(f"Parameter {self.name} wrong value {raw}: can't be parsed as Float") from None
            if value != value or value in (float("inf"), float("-inf")):
                raise QueryError(f"Parameter {self.name} wrong value {raw}: must be finite")
            return value
        if self.kind == "int":
            try:
                value = float(raw)
            except (TypeError, ValueError):
                value = float("nan")
            if value != value or value != int(value):
                raise QueryError(f"Parameter {self.name} wrong value {raw}: can't be parsed as Integer")
            return int(value)
        value = str(raw)
        if self.allowed is not None and value not in self.allowed:
            raise QueryError(f"Parameter {self.name} wrong value {value}: allowed values are {list(self.allowed)}")
        return value


def _parse_list(name: str, raw):
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    if isinstance(raw, list):
        return [str(v).strip() for v in raw]
    text = str(raw).strip()
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise QueryError(f"parameter {name} is not a valid list: {text[:80]}") from None
        return [str(v).strip() for v in value]
    if text == "":
        return []
    if name == "scw_list" and len(text.split()) > 1 and "," not in text:
        raise QueryError("a space separated science windows list is an unsupported format")
    return [item.strip() for item in text.split(",") if item.strip()]


SRC_QUERY = (
    Parameter(
        "src_name", "str", "1E 1740.7-2942", "str", owl_uri=_STR + ("http://odahub.io/ontology#AstrophysicalObject",)
    ),
    Parameter("RA", "float", 265.97845833, "deg", owl_uri=_ANGLE),
    Parameter("DEC", "float", -29.74516667, "deg", owl_uri=_ANGLE),
    Parameter("T1", "time", "2017-03-06T13:26:48.000", "isot", owl_uri=("http://odahub.io/ontology#TimeInstant",)),
    Parameter("T_format", "str", "isot", "str", companion=True),
    Parameter("T2", "time", "2017-03-06T15:32:27.000", "isot", owl_uri=("http://odahub.io/ontology#TimeInstant",)),
    Parameter(
        "token", "str", None, "str", optional=True, owl_uri=_STR + ("http://odahub.io/ontology#AstrophysicalObject",)
    ),
)

TIME_FORMATS = ("isot", "iso", "mjd", "jd", "unix", "decimalyear")


def _osa_parameters(*, radius: float) -> tuple:
    return (
        Parameter("user_catalog", "raw", None, optional=True, public=False),
        Parameter("scw_list", "list", [], optional=True, owl_uri=("http://odahub.io/ontology#InputProdList",)),
        Parameter("selected_catalog", "raw", None, optional=True),
        Parameter("radius", "float", radius, "deg", owl_uri=_ANGLE),
        Parameter("max_pointings", "int", 50, owl_uri=_INT),
        Parameter("osa_version", "str", "OSA11.2", "str", owl_uri=_STR, allowed=None),
        Parameter("integral_data_rights", "str", "public", "str", owl_uri=_STR, allowed=("public", "all-private")),
    )


def _energy_parameters(e1: float, e2: float) -> tuple:
    return (
        Parameter("E1_keV", "float", e1, "keV", owl_uri=_ENERGY),
        Parameter("E2_keV", "float", e2, "keV", owl_uri=_ENERGY),
    )


_IMAGE_QUERY = (
    Parameter("detection_threshold", "float", 7.0, "sigma", owl_uri=("http://odahub.io/ontology#DetectionThreshold",)),
    Parameter("image_scale_min", "float", None, None, optional=True, owl_uri=_FLOAT),
    Parameter("image_scale_max", "float", None, None, optional=True, owl_uri=_FLOAT),
)
_LC_QUERY = (
    Parameter("time_bin", "float", 1000.0, "sec", owl_uri=("http://odahub.io/ontology#TimeDeltaIsDeprecated",)),
    Parameter("time_bin_format", "str", "sec", "str", companion=True, allowed=("sec", "jd")),
)
_SPECTRAL_FIT_QUERY = tuple(
    Parameter(name, "str", default, "str", owl_uri=_STR + ("http://odahub.io/ontology#AstrophysicalObject",))
    for name, default in (
        ("xspec_model", "powerlaw"),
        ("ph_file_name", ""),
        ("arf_file_name", ""),
        ("rmf_file_name", ""),
    )
)


@dataclasses.dataclass(frozen=True)
class ProductSpec:
    """A product of an instrument: its query name, kind and own parameters."""

    name: str
    query_name: str
    kind: str
    parameters: tuple = ()
    required_roles: tuple = ()


@dataclasses.dataclass(frozen=True)
class InstrumentSpec:
    """An instrument: its parameters and products.

    Attributes
    ----------
    name : str
        ``isgri``, ``jemx``, or a test instrument.
    parameters_query : str
        Name of the instrument's parameter block in ``api/meta-data``.
    parameters : tuple of Parameter
        Parameters shared by all products (after the source query).
    products : dict
        Product name → :class:`ProductSpec`.
    energy_range : tuple or None
        Allowed (min, max) keV.
    osa : bool
        An INTEGRAL OSA instrument (ScW lists, data rights, roles).
    """

    name: str
    parameters_query: str
    parameters: tuple
    products: dict
    energy_range: tuple | None = None
    osa: bool = False
    asynchronous: bool = True
    label: str = ""

    def product(self, product_name: str) -> ProductSpec:
        """Return a product, or raise QueryError in the real dispatcher's words."""
        try:
            return self.products[product_name]
        except KeyError:
            known = {name: spec.query_name for name, spec in self.products.items()}
            raise QueryError(
                f"[ InstrumentQueryBackEnd : {self.name} ] constructor failed: product type "
                f"{product_name} not in query_dictionary {known}"
            ) from None

    def all_parameters(self, product_name: str) -> tuple:
        """Source query, instrument and product parameters, in the real order."""
        return SRC_QUERY + self.parameters + self.product(product_name).parameters

    def par_names(self, product_name: str | None) -> list[str]:
        """Answer of ``api/par-names`` (``user_catalog`` is hidden, as by the real one).

        Without a product, the arguments of every product follow the source
        and instrument ones, each name once (``Instrument.get_arguments_name_list``).
        """
        if product_name is None:
            declared = (
                SRC_QUERY + self.parameters + tuple(p for spec in self.products.values() for p in spec.parameters)
            )
        else:
            declared = self.all_parameters(product_name)
        return list(dict.fromkeys(p.name for p in declared if p.public))

    def meta_data(self, product_name: str | None = None) -> list:
        """Answer of ``api/meta-data`` (one list holding the query blocks)."""
        blocks = [
            {"instrumet": self.name},
            {"prod_dict": {name: spec.query_name for name, spec in self.products.items()}},
            [{"query_name": "src_query"}] + [p.meta() for p in SRC_QUERY],
            [{"query_name": self.parameters_query}] + [p.meta() for p in self.parameters if p.in_meta],
        ]
        chosen = [self.product(product_name)] if product_name else list(self.products.values())
        for spec in chosen:
            blocks.append(
                [{"query_name": spec.query_name}, {"product_name": spec.name}]
                + [p.meta() for p in spec.parameters if p.in_meta]
            )
        return [blocks]

    def normalise(self, values: dict, product_name: str) -> tuple[dict, list[str]]:
        """Turn raw request values into the normalised parameter set.

        Parameters
        ----------
        values : dict
            Raw request values (strings; lists for repeated keys).
        product_name : str
            The requested product.

        Returns
        -------
        parameters : dict
            Every parameter of the product with its default filled in, plus
            the API keys the client sent (as ``analysis_parameters`` shows them).
        comments : list of str
            Notes for ``exit_status.comment`` (unused arguments).

        Raises
        ------
        QueryError
            For a missing non-optional value or an invalid one.
        """
        declared = self.all_parameters(product_name)
        declared_names = {p.name for p in declared}
        parameters, comments = {}, []
        for key, raw in values.items():
            if key in API_KEYS:
                parameters[key] = raw[0] if isinstance(raw, list) and len(raw) == 1 else raw
            elif key not in declared_names and key not in IGNORED_KEYS:
                comments.append(f"Please note that argument {key} is not used")
        for parameter in declared:
            if parameter.name in values:
                parameters[parameter.name] = parameter.parse(values[parameter.name])
            elif parameter.name != "scw_list" and parameter.public:
                # as the real dispatcher (params_not_to_be_included), scw_list and user_catalog appear in
                # analysis_parameters only when sent
                parameters[parameter.name] = parameter.default
        _check_time_formats(parameters)
        if self.name == "empty" and parameters.get("p") is not None and parameters["p"] > 800:
            # the empty instrument's p is a BoundaryFloat (dummy_plugin/empty_instrument.py)
            raise QueryError("p value is restricted to 800 W")
        if self.osa:
            self._check_osa(parameters)
        return parameters, comments

    def check_after_roles(self, parameters: dict) -> None:
        """Checks a local MMODA makes only once the roles are granted.

        The real dispatcher checks parameter values while building the query
        (HTTP 400), then the roles (403), then runs the product query; it never
        compares T1 with T2 (dispatcher-app ``ParameterRange`` has no ordering
        check): an empty interval simply selects no ScW. A local MMODA refuses
        ``T1 >= T2`` with a 400, but only after the roles, so that the order of
        the answers is the real one (oda_api's ``test_unauthorized`` sends
        T1 == T2 without a token and expects the roles message).

        Raises
        ------
        QueryError
            If ``T1`` is not earlier than ``T2``.
        """
        _check_time_order(parameters)

    def _check_osa(self, parameters: dict) -> None:
        if self.energy_range is not None:
            low, high = self.energy_range
            e1, e2 = parameters["E1_keV"], parameters["E2_keV"]
            if not (low <= e1 <= high and low <= e2 <= high):
                raise QueryError(f"{self.label} energy range is restricted to {low:g} - {high:g} keV")
            if e1 >= e2:
                raise QueryError(f"E1_keV={e1:g} must be lower than E2_keV={e2:g}")
        check_osa_version(parameters["osa_version"])
        if parameters["radius"] <= 0:
            raise QueryError(f"radius={parameters['radius']:g} deg must be positive")
        if parameters["max_pointings"] < 1:
            raise QueryError(f"max_pointings={parameters['max_pointings']} must be at least 1")
        if not (-90 <= parameters["DEC"] <= 90):
            raise QueryError(f"DEC={parameters['DEC']:g} must be within [-90, 90] deg")
        if "jemx_num" in parameters and parameters["jemx_num"] not in (1, 2):
            raise QueryError(f"jemx_num={parameters['jemx_num']} must be 1 or 2")
        if "time_bin" in parameters and parameters["time_bin"] <= 0:
            raise QueryError(f"time_bin={parameters['time_bin']:g} must be positive")
        if "detection_threshold" in parameters and parameters["detection_threshold"] <= 0:
            raise QueryError(f"detection_threshold={parameters['detection_threshold']:g} must be positive")


def check_osa_version(version: str) -> None:
    """Check an ``osa_version`` the way the OSA plugin does.

    ``OSA11.2[-subversion][--modifier...]``; base OSA10.2 or OSA11.2; the
    obsolete OSA11.0 and OSA11.1 are refused, in the plugin's words.
    """
    base, _, rest = version.partition("--")
    base_version, _, subversion = base.partition("-")
    if base_version in OSA_OBSOLETE_VERSIONS and not subversion:
        # the plugin's words (osa_common_pars.OSAVersion.value), typo included
        raise QueryError(
            f"Please note {base_version} is being phased out. We consider that for all or almost all "
            f"likely user requests {OSA_OBSOLETE_VERSIONS[base_version]} shoud be used instead of "
            f"{base_version}."
        )
    if base_version not in OSA_BASE_VERSIONS + tuple(OSA_OBSOLETE_VERSIONS):
        raise QueryError(
            f"value {version} is not allowed. The OSA version should start with one of "
            f"{list(OSA_BASE_VERSIONS)}, and may contain additional components."
        )
    if base_version in OSA_OBSOLETE_VERSIONS:
        raise QueryError("unknown dev OSA version!")
    modifiers = [m for m in rest.split("--") if m] if rest else []
    unknown = [m for m in modifiers if m not in OSA_MODIFIERS]
    if unknown:
        raise QueryError(f"osa_version modifiers {unknown} are unknown, allowed: {list(OSA_MODIFIERS)}")


def _parse_times(parameters: dict) -> list[Time]:
    time_format = parameters.get("T_format") or "isot"
    if time_format not in TIME_FORMATS:
        raise QueryError(f"T_format {time_format} is not one of {list(TIME_FORMATS)}")
    times = []
    for name in ("T1", "T2"):
        value = parameters[name]
        try:
            if time_format in ("isot", "iso"):
                times.append(Time(str(value), format="isot" if "T" in str(value) else "iso", scale="utc"))
            else:
                times.append(Time(float(value), format=time_format, scale="utc"))
        except (ValueError, TypeError):
            raise QueryError(f"Parameter {name} wrong value {value}: can't be parsed as {time_format}") from None
    return times


def _check_time_formats(parameters: dict) -> None:
    if "T1" in parameters:
        _parse_times(parameters)


def _check_time_order(parameters: dict) -> None:
    if "T1" not in parameters:
        return
    times = _parse_times(parameters)
    if times[0] >= times[1]:
        raise QueryError(f"T1={parameters['T1']} must be earlier than T2={parameters['T2']}")


def times_ijd(parameters: dict) -> tuple[float, float]:
    """Return (T1, T2) of normalised parameters as IJD (MJD − 51544, TT)."""
    time_format = parameters.get("T_format") or "isot"
    out = []
    for name in ("T1", "T2"):
        value = parameters[name]
        if time_format in ("isot", "iso"):
            t = Time(str(value), format="isot" if "T" in str(value) else "iso", scale="utc")
        else:
            t = Time(float(value), format=time_format, scale="utc")
        out.append(t.tt.mjd - 51544.0)
    return out[0], out[1]


def _isgri() -> InstrumentSpec:
    base = _osa_parameters(radius=15.0) + _energy_parameters(20.0, 40.0)
    return InstrumentSpec(
        name="isgri",
        parameters_query="isgri_parameters",
        parameters=base,
        osa=True,
        label="ISGRI",
        energy_range=(15.0, 800.0),
        products={
            "isgri_image": ProductSpec("isgri_image", "isgri_image_query", "image", _IMAGE_QUERY),
            "isgri_spectrum": ProductSpec("isgri_spectrum", "isgri_spectrum_query", "spectrum"),
            "isgri_lc": ProductSpec("isgri_lc", "isgri_lc_query", "lc", _LC_QUERY),
            "spectral_fit": ProductSpec("spectral_fit", "spectral_fit_query", "spectral_fit", _SPECTRAL_FIT_QUERY),
        },
    )


def _jemx() -> InstrumentSpec:
    base = (
        _osa_parameters(radius=4.0)
        + (Parameter("jemx_num", "int", 2, None, owl_uri=_INT),)
        + _energy_parameters(3.0, 20.0)
    )
    return InstrumentSpec(
        name="jemx",
        parameters_query="jemx_parameters",
        parameters=base,
        osa=True,
        label="JEM-X",
        energy_range=(3.0, 35.0),
        products={
            "jemx_image": ProductSpec("jemx_image", "jemx_image_query", "image", _IMAGE_QUERY),
            "jemx_spectrum": ProductSpec("jemx_spectrum", "jemx_spectrum_query", "spectrum"),
            "jemx_lc": ProductSpec("jemx_lc", "jemx_lc_query", "lc", _LC_QUERY),
            "spectral_fit": ProductSpec("spectral_fit", "spectral_fit_query", "spectral_fit", _SPECTRAL_FIT_QUERY),
        },
    )


def _spi_acs() -> InstrumentSpec:
    """SPI-ACS (plugin dispatcher-plugin-integral-all-sky): synchronous, one light-curve product."""
    # user_catalog, an unnamed InputProdList and selected_catalog form the real instrument query; the
    # unnamed parameter is left out (it has no name to send or to report)
    instrument = (
        Parameter("user_catalog", "raw", None, optional=True, public=False),
        Parameter("selected_catalog", "raw", None, optional=True),
    )
    data_level = Parameter(
        "data_level",
        "str",
        "ordinary",
        "str",
        owl_uri=_STR + ("http://odahub.io/ontology#AstrophysicalObject",),
        allowed=("ordinary", "realtime"),
    )
    return InstrumentSpec(
        name="spi_acs",
        parameters_query="spiacs_parameters",
        parameters=instrument,
        asynchronous=False,
        label="SPI-ACS",
        products={"spi_acs_lc": ProductSpec("spi_acs_lc", "spi_acs_lc_query", "spiacs_lc", (data_level,) + _LC_QUERY)},
    )


def _polar() -> InstrumentSpec:
    """POLAR, as production lists it: the real plugin's parameters and product, and no data.

    dispatcher-plugin-polar (polar.py, polar_lightcurve_query.py): instrument
    query ``polar_parameters`` (``user_catalog``, ``selected_catalog``,
    ``E1_keV`` 0 keV, ``E2_keV`` 10000 keV), one product ``polar_lc``
    (``polar_lc_query``: ``time_bin`` 1000 s with ``time_bin_format``),
    answered synchronously (``asynch=False``). This local MMODA simulates
    INTEGRAL only: every POLAR query fails in the shape the real dispatcher
    gives when the POLAR data server has no light curve to return (the
    plugin's ``PolarAnalysisException`` becomes "Error when getting query
    products", status 1, the instrument and product in ``error_message``).
    """
    parameters = (
        Parameter("user_catalog", "raw", None, optional=True, public=False),
        Parameter("selected_catalog", "raw", None, optional=True),
        Parameter("E1_keV", "float", 0.0, "keV", owl_uri=_ENERGY),
        Parameter("E2_keV", "float", 10000.0, "keV", owl_uri=_ENERGY),
    )
    return InstrumentSpec(
        name="polar",
        parameters_query="polar_parameters",
        parameters=parameters,
        asynchronous=False,
        label="POLAR",
        products={"polar_lc": ProductSpec("polar_lc", "polar_lc_query", "failing", _LC_QUERY)},
    )


# The dispatcher's test instruments (dispatcher-app 1.3.6, cdci_data_analysis/plugins/dummy_plugin): the real
# dispatcher serves them in debug mode; so does a local MMODA with debug_instruments=True.


def _empty() -> InstrumentSpec:
    # empty_instrument.py: InstrumentQuery('empty_instrument_query', input_prod_list_name='p_list',
    # catalog_name='user_catalog'); p is a BoundaryFloat(10 W) refusing values above 800
    instrument_parameters = (
        Parameter("user_catalog", "raw", None, optional=True, public=False),
        Parameter("p_list", "list", [], None, optional=True),
        Parameter("selected_catalog", "raw", None, optional=True),
    )
    numerical = (Parameter("p", "float", 10.0, "W", owl_uri=_FLOAT),)
    # EchoProductQuery('echo_parameters_dummy_query', [Angle 1 arcsec, Angle 1 deg, Energy 1 MeV with units_name
    # 'energy_units']): the units companion is an argument (par-names) but not described by meta-data
    echo = (
        Parameter("ang", "float", 1.0, "arcsec", owl_uri=_ANGLE),
        Parameter("ang_deg", "float", 1.0, "deg", owl_uri=_ANGLE),
        Parameter("energ", "float", 1.0, "MeV", owl_uri=_ENERGY),
        Parameter("energy_units", "str", "MeV", "str", companion=True, in_meta=False),
    )
    return InstrumentSpec(
        name="empty",
        parameters_query="empty_instrument_query",
        parameters=instrument_parameters,
        asynchronous=False,
        products={
            "dummy": ProductSpec("dummy", "empty_parameters_dummy_query", "dummy"),
            "numerical": ProductSpec(
                "numerical", "numerical_parameters_dummy_query", "numerical", numerical, required_roles=("general",)
            ),
            "failing": ProductSpec("failing", "failing_parameters_dummy_query", "failing"),
            "echo": ProductSpec("echo", "echo_parameters_dummy_query", "echo", echo),
        },
    )


def _empty_async() -> InstrumentSpec:
    # empty_async_instrument.py: InstrumentQuery('empty_async_instrument_query', input_prod_list_name='scw_list',
    # catalog_name='user_catalog')
    scws = (
        Parameter("user_catalog", "raw", None, optional=True, public=False),
        Parameter("scw_list", "list", [], optional=True, owl_uri=("http://odahub.io/ontology#InputProdList",)),
        Parameter("selected_catalog", "raw", None, optional=True),
    )
    return InstrumentSpec(
        name="empty-async",
        parameters_query="empty_async_instrument_query",
        parameters=scws,
        products={"dummy": ProductSpec("dummy", "empty_async_parameters_dummy_query", "callback")},
    )


def _empty_semi_async() -> InstrumentSpec:
    # empty_semi_async_instrument.py: InstrumentQuery('empty_async_instrument_query') without input product list
    # or catalogue names; products dummy and numerical (p: a plain Float of 10 W, no 800 W bound); its data
    # server answers by p (-1 failed, 0 <= p < 4 submitted, else done). Served synchronously here: the
    # answers for p < 4 belong to the job life cycle (see the fidelity notes).
    return InstrumentSpec(
        name="empty-semi-async",
        parameters_query="empty_async_instrument_query",
        parameters=(Parameter("selected_catalog", "raw", None, optional=True),),
        asynchronous=False,
        products={
            "dummy": ProductSpec("dummy", "empty_parameters_dummy_query", "dummy"),
            "numerical": ProductSpec(
                "numerical",
                "numerical_parameters_dummy_query",
                "numerical",
                (Parameter("p", "float", 10.0, "W", owl_uri=_FLOAT),),
                required_roles=("general",),
            ),
        },
    )


def instruments(*, debug: bool = False) -> dict[str, InstrumentSpec]:
    """Instruments served: ISGRI, JEM-X and POLAR (no data), plus the dispatcher's test instruments in debug mode."""
    served = {"isgri": _isgri(), "jemx": _jemx(), "polar": _polar(), "spi_acs": _spi_acs()}
    if debug:
        served["empty"] = _empty()
        served["empty-async"] = _empty_async()
        served["empty-semi-async"] = _empty_semi_async()
    return served


def check_scw_ids(scw_list: list[str]) -> list[str]:
    """Return the ScW ids that do not match ``RRRRPPPPSSSF.VVV``."""
    return [scw for scw in scw_list if not SCW_ID_PATTERN.match(scw)]
