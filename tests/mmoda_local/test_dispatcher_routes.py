"""The real dispatcher's answers outside the job life cycle: token checks, roles, test instruments, POLAR.

Each expectation is the real dispatcher's (dispatcher-app 1.3.6 and its plugins, read in their code; the
module and function are named by each test); oda_api 1.3.5's own tests check the same routes from the
client's side (``tests/conformance/test_oda_api_suite.py``).
"""

from __future__ import annotations

import jwt
import pytest
import requests
from oda_api.api import DispatcherAPI, RemoteException, RequestNotUnderstood, Unauthorized

from mmoda_local import auth

EXPIRED = (
    "The token provided is expired, please try to logout and login again. If already logged out, please "
    "clean the cookies, and resubmit you request."
)


def expired_token(server) -> str:
    return server.token("general", lifetime_s=-10)


def forged_token(server) -> str:
    return jwt.encode({"sub": "a@b.c", "roles": "general", "exp": 2_000_000_000}, "another-secret", algorithm="HS256")


def dispatcher(url: str) -> DispatcherAPI:
    disp = DispatcherAPI(url=url, instrument="mock")
    disp.n_max_tries = 1
    return disp


@pytest.mark.parametrize("route", ["api/meta-data", "api/par-names"])
def test_bad_token_on_descriptions_is_a_request_not_authorized(server, route):
    # dispatcher_query.InstrumentQueryBackEnd.__init__ validates the token before it looks at the instrument
    for instrument in ("empty", "no-such-instrument"):
        answer = requests.get(
            f"{server.url}/{route}", params={"instrument": instrument, "token": expired_token(server)}, timeout=30
        )
        assert answer.status_code == 403
        body = answer.json()
        assert body["error"] == f"RequestNotAuthorized():{EXPIRED}"
        assert body["error_message"] == EXPIRED and body["debug_message"] == ""
        assert "empty-semi-async" in body["installed_instruments"]
    forged = requests.get(
        f"{server.url}/{route}", params={"instrument": "empty", "token": forged_token(server)}, timeout=30
    )
    assert forged.status_code == 403 and forged.json()["error"].startswith(
        "RequestNotAuthorized():The token provided is not valid"
    )
    valid = requests.get(f"{server.url}/{route}", params={"instrument": "empty", "token": server.token()}, timeout=30)
    assert valid.status_code == 200
    if route == "api/par-names":
        # without a product: every product's arguments, each once (Instrument.get_arguments_name_list)
        assert valid.json()[-5:] == ["p", "ang", "ang_deg", "energ", "energy_units"]


def test_bad_token_on_the_instrument_list_is_a_short_text_403(server):
    # tokenHelper.validate_token_from_request, through get_user_specific_instrument_list
    expired = requests.get(f"{server.url}/instr-list", params={"token": expired_token(server)}, timeout=30)
    assert (expired.status_code, expired.text) == (403, "The token provided is expired.")
    assert expired.headers["Content-Type"].startswith("text/html")
    forged = requests.get(f"{server.url}/instr-list", params={"token": forged_token(server)}, timeout=30)
    assert (forged.status_code, forged.text) == (403, "The token provided is not valid.")
    listed = requests.get(f"{server.url}/api/instr-list", params={"instrument": "mock"}, timeout=30).json()
    assert {"isgri", "jemx", "polar", "empty", "empty-async", "empty-semi-async"} <= set(listed)


def test_expired_token_on_run_analysis_names_the_exception(server):
    with pytest.raises(Unauthorized) as raised:
        dispatcher(server.url).get_product(
            instrument="empty", product="dummy", product_type="Dummy", token=expired_token(server), silent=True
        )
    assert raised.value.message == f"RequestNotAuthorized():{EXPIRED}"


def test_roles_are_checked_before_the_time_order(server):
    # Instrument.run_query checks the roles right after the parameters; the real dispatcher never compares T1
    # with T2, a local MMODA does, but only once the roles are granted
    query = dict(
        instrument="empty",
        product="numerical",
        product_type="Dummy",
        T1="2011-11-11T11:11:11",
        T2="2011-11-11T11:11:11",
        silent=True,
    )
    with pytest.raises(
        Unauthorized,
        match=r"- Your priviledge roles include \[\]\n- You are lacking all of the "
        r"following roles:\n - general: please refer to support for details\n",
    ):
        dispatcher(server.url).get_product(**query)
    with pytest.raises(RequestNotUnderstood, match="must be earlier"):
        dispatcher(server.url).get_product(token=server.token("general"), **query)


def test_numerical_above_fifty_watts_needs_the_hpc_role(server):
    # dummy_plugin data_server_dispatcher.DataServerNumericQuery.check_query_roles
    with pytest.raises(Unauthorized) as raised:
        dispatcher(server.url).get_product(
            instrument="empty",
            product="numerical",
            product_type="Dummy",
            p=60,
            token=server.token("general"),
            silent=True,
        )
    assert raised.value.message.endswith(
        "- You are lacking all of the following roles:\n"
        " - unige-hpc-full: unige-hpc-full role is needed for p>50 as well\n"
        "You can request support if you think you should be able to make this request."
    )


def test_osa_roles_have_the_plugins_reasons_sorted_by_role():
    # dispatcher-plugin-integral OsaDispatcher.check_query_roles, sorted by Instrument.check_instrument_query_role
    parameters = dict(max_pointings=60, scw_list=[], integral_data_rights="all-private", osa_version="OSA11.2")
    lacking = auth.lacking_roles([], osa=True, product_roles=(), parameters=parameters)
    assert lacking == {
        "integral-private-qla": "this role is needed to access private INTEGRAL data requested with "
        'integral_data_rights == "all-private"',
        "unige-hpc-full": "it is needed to request > 50 ScW, you requested max_pointings=60",
    }
    nrt = dict(
        max_pointings=50, scw_list=["066500220010.000"], integral_data_rights="public", osa_version="OSA11.2--fullbkg"
    )
    assert list(auth.lacking_roles(["general"], osa=True, product_roles=(), parameters=nrt)) == [
        "integral-private-qla",
        "integral-public-nrt",
    ]
    assert (
        auth.lacking_roles(["integral-private-qla", "integral-public-nrt"], osa=True, product_roles=(), parameters=nrt)
        == {}
    )


def test_refresh_pushes_the_expiry_back_by_the_interval(server):
    # tokenHelper.refresh_token: the new exp is the old one plus the interval (at most token_max_refresh_interval)
    token = server.token("general, refresh-tokens", lifetime_s=1000)
    old_exp = jwt.decode(token, options={"verify_signature": False})["exp"]
    answer = requests.get(f"{server.url}/refresh_token", params={"token": token}, timeout=30)
    assert answer.status_code == 200
    assert jwt.decode(answer.text, options={"verify_signature": False})["exp"] == old_exp + 604800
    shorter = requests.get(f"{server.url}/refresh_token", params={"token": token, "refresh_interval": 60}, timeout=30)
    assert jwt.decode(shorter.text, options={"verify_signature": False})["exp"] == old_exp + 60
    too_long = requests.get(
        f"{server.url}/refresh_token", params={"token": token, "refresh_interval": 604801}, timeout=30
    )
    assert too_long.status_code == 403
    assert too_long.json()["error"] == "RequestNotAuthorized():Request not authorized"
    lacking = requests.get(f"{server.url}/refresh_token", params={"token": server.token("general")}, timeout=30)
    assert lacking.status_code == 403 and lacking.text.endswith("the following roles are missing: refresh-tokens.")


def test_test_instruments_offer_what_the_dispatchers_do(server):
    # dummy_plugin empty_instrument.py and empty_semi_async_instrument.py
    disp = dispatcher(server.url)
    empty = disp.get_instrument_description("empty")[0]
    assert empty[1]["prod_dict"] == {
        "dummy": "empty_parameters_dummy_query",
        "numerical": "numerical_parameters_dummy_query",
        "failing": "failing_parameters_dummy_query",
        "echo": "echo_parameters_dummy_query",
    }
    names = requests.get(
        f"{server.url}/api/par-names", params={"instrument": "empty", "product_type": "echo"}, timeout=30
    ).json()
    assert names[-4:] == ["ang", "ang_deg", "energ", "energy_units"]
    numerical = requests.get(
        f"{server.url}/api/meta-data", params={"instrument": "empty", "product_type": "numerical"}, timeout=30
    ).json()
    assert {
        "name": "p",
        "units": "W",
        "value": 10.0,
        "restrictions": {"is_optional": False},
        "owl_uri": ["http://www.w3.org/2001/XMLSchema#float", "http://odahub.io/ontology#Float"],
    } in numerical[0][-1]
    semi = disp.get_instrument_description("empty-semi-async")[0]
    assert semi[1]["prod_dict"] == {
        "dummy": "empty_parameters_dummy_query",
        "numerical": "numerical_parameters_dummy_query",
    }


def test_polar_is_listed_with_the_real_parameters_and_has_no_data(server):
    # dispatcher-plugin-polar polar.py / polar_lightcurve_query.py; this local MMODA simulates INTEGRAL only
    names = requests.get(
        f"{server.url}/api/par-names", params={"instrument": "polar", "product_type": "polar_lc"}, timeout=30
    ).json()
    assert names == [
        "src_name",
        "RA",
        "DEC",
        "T1",
        "T_format",
        "T2",
        "token",
        "selected_catalog",
        "E1_keV",
        "E2_keV",
        "time_bin",
        "time_bin_format",
    ]
    answer = requests.get(
        f"{server.url}/run_analysis",
        params={
            "instrument": "polar",
            "product_type": "polar_lc",
            "query_type": "Real",
            "query_status": "new",
            "T1": "2017-01-01T00:00:00",
            "T2": "2017-01-01T01:00:00",
            "E1_keV": 50,
            "E2_keV": 500,
            "time_bin": 10,
            "time_bin_format": "sec",
            "off_line": "False",
            "api": "True",
        },
        timeout=30,
    ).json()
    assert answer["query_status"] == "failed"
    assert answer["exit_status"]["status"] == 1
    assert answer["exit_status"]["message"] == "Error when getting query products"
    assert answer["exit_status"]["error_message"].startswith("Instrument: polar, product: polar_lc")
    with pytest.raises(RemoteException, match="Error when getting query products"):
        dispatcher(server.url).get_product(
            instrument="polar",
            product="polar_lc",
            product_type="Real",
            T1="2017-01-01T00:00:00",
            T2="2017-01-01T01:00:00",
            silent=True,
        )
