"""The demo data generator (scripts/demo_data.py): valid FHIR, valid French identifiers, closed
references, true attachment hashes, determinism, and the loader's HTTP behaviour."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import http.server
import importlib.util
import json
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_server.fhir.nir import is_valid_nir

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo_data.py"


def _load_module() -> Any:
    from fhir_server import demo_data

    return demo_data


demo = _load_module()

N_PATIENTS, SEED, DOCS = 45, 7, 3
INS_NIR = "urn:oid:1.2.250.1.213.1.4.8"
RPPS = "https://rpps.esante.gouv.fr"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
TRE_A03 = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TRE_R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
V3_CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
# DMP type code -> class code (ANS ASS_X16), written out independently of the generator's table.
EXPECTED_CLASS = {
    "11488-4": "10",
    "11502-2": "10",
    "18748-4": "31",
    "57833-6": "42",
    "60591-5": "11",
    "34133-9": "11",
    "11490-0": "10",
    "34874-8": "10",
    "15507-7": "10",
    "87273-9": "52",
    "60593-1": "43",
    "EXPPAT_3": "90",
}


@pytest.fixture(scope="module")
def bundles() -> list[dict]:
    return demo.generate(N_PATIENTS, seed=SEED, docs_per_patient=DOCS)


def resources(bundles: list[dict], resource_type: str | None = None) -> Iterator[dict]:
    for bundle in bundles:
        for entry in bundle["entry"]:
            if resource_type is None or entry["resource"]["resourceType"] == resource_type:
                yield entry["resource"]


def ins_nir(patient: dict) -> str:
    return next(i["value"] for i in patient["identifier"] if i["system"] == INS_NIR)


def walk_references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            yield node["reference"]
        for value in node.values():
            yield from walk_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk_references(value)


# -- shape -------------------------------------------------------------------------------------


def test_bundles_are_transactions_of_posts_with_urn_uuid_full_urls(bundles: list[dict]) -> None:
    # One bundle of shared organisations, then one per 20 patients: 20 + 20 + 5.
    assert len(bundles) == 1 + 3
    for bundle in bundles:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert entry["request"]["method"] == "POST"
            assert entry["request"]["url"] == entry["resource"]["resourceType"]
            assert "id" not in entry["resource"]
    assert [len(list(resources([b], "Patient"))) for b in bundles] == [0, 20, 20, 5]


def test_counts(bundles: list[dict]) -> None:
    counts = Counter(r["resourceType"] for r in resources(bundles))
    assert counts["Patient"] == N_PATIENTS
    assert counts["DocumentReference"] == counts["Binary"] == N_PATIENTS * DOCS
    assert counts["Practitioner"] == counts["PractitionerRole"] > 0
    assert counts["Organization"] > 0


def test_every_resource_and_bundle_is_valid_r4(bundles: list[dict]) -> None:
    for bundle in bundles:
        get_fhir_model_class("Bundle").model_validate(bundle)
        for entry in bundle["entry"]:
            res = entry["resource"]
            get_fhir_model_class(res["resourceType"]).model_validate(res)


def test_every_resource_passes_the_server_validation(bundles: list[dict]) -> None:
    validation = pytest.importorskip("fhir_server.fhir.validation")
    for res in resources(bundles):
        assert validation.issues_for(res) == [], res["resourceType"]


def test_bundles_are_json_round_trippable(bundles: list[dict]) -> None:
    for bundle in bundles:
        assert json.loads(json.dumps(bundle, ensure_ascii=False)) == bundle


# -- references --------------------------------------------------------------------------------


def test_all_references_resolve_within_their_bundle(bundles: list[dict]) -> None:
    for bundle in bundles:
        full_urls = {e["fullUrl"]: e["resource"]["resourceType"] for e in bundle["entry"]}
        assert len(full_urls) == len(bundle["entry"]), "duplicate fullUrl"
        for ref in walk_references(bundle):
            assert ref in full_urls, ref
        for doc in resources([bundle], "DocumentReference"):
            assert full_urls[doc["content"][0]["attachment"]["url"]] == "Binary"
            assert full_urls[doc["subject"]["reference"]] == "Patient"
            assert doc["context"]["sourcePatientInfo"] == doc["subject"]


def test_each_binary_belongs_to_exactly_one_document(bundles: list[dict]) -> None:
    for bundle in bundles:
        urls = [d["content"][0]["attachment"]["url"] for d in resources([bundle], "DocumentReference")]
        binaries = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Binary"]
        assert sorted(urls) == sorted(e["fullUrl"] for e in binaries)
        by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        for e in binaries:
            ctx = by_url[e["resource"]["securityContext"]["reference"]]
            assert ctx["content"][0]["attachment"]["url"] == e["fullUrl"]


def test_general_practitioner_is_a_gp_of_the_bundle(bundles: list[dict]) -> None:
    for bundle in bundles[1:]:
        roles = list(resources([bundle], "PractitionerRole"))
        gps = {
            r["practitioner"]["reference"]
            for r in roles
            if r["code"][0]["coding"][0] == {"system": TRE_G15, "code": "10", "display": "Médecin"}
            and r.get("specialty", [{}])[0].get("coding", [{}])[0].get("code") in ("SM54", "SM26")
        }
        for patient in resources([bundle], "Patient"):
            assert patient["active"] is True
            assert patient["generalPractitioner"][0]["reference"] in gps


def test_shared_organisations_are_conditional_creates(bundles: list[dict]) -> None:
    shared = bundles[0]
    assert {e["resource"]["resourceType"] for e in shared["entry"]} == {"Organization"}
    keys = {e["request"]["ifNoneExist"] for e in shared["entry"]}
    later = {e["request"].get("ifNoneExist") for b in bundles[1:] for e in b["entry"]}
    assert keys <= later  # every shared hospital is repeated, conditionally, where it is used
    assert all(k.startswith("identifier=urn:oid:1.2.250.1.71.4.2.2|") for k in keys)
    plain = demo.generate(3, seed=SEED, conditional=False)
    assert not any("ifNoneExist" in e["request"] for b in plain for e in b["entry"])


# -- identities --------------------------------------------------------------------------------


def test_every_nir_is_valid_unique_and_consistent_with_the_patient(bundles: list[dict]) -> None:
    nirs = []
    for patient in resources(bundles, "Patient"):
        nir = ins_nir(patient)
        nirs.append(nir)
        assert is_valid_nir(nir), nir
        ins = next(i for i in patient["identifier"] if i["system"] == INS_NIR)
        assert ins["use"] == "official"
        assert ins["type"]["coding"][0] == {
            "system": "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203",
            "code": "INS-NIR",
        }
        assert patient["gender"] == {"1": "male", "2": "female"}[nir[0]]
        birth = dt.date.fromisoformat(patient["birthDate"])
        assert nir[1:3] == f"{birth.year % 100:02d}" and nir[3:5] == f"{birth.month:02d}"
        place = next(e for e in patient["extension"] if e["url"].endswith("patient-birthPlace"))
        insee = place["valueAddress"]["extension"][0]["valueCoding"]["code"]
        expected = insee if not (insee[:2] in ("2A", "2B") and birth.year < 1976) else "20" + insee[2:]
        assert nir[5:10] == expected
    assert len(set(nirs)) == len(nirs)


def test_patients_cover_corsica_overseas_abroad_and_both_sexes(bundles: list[dict]) -> None:
    nirs = [ins_nir(p) for p in resources(bundles, "Patient")]
    depts = {n[5:7] for n in nirs}
    assert {"2A", "2B", "97", "99"} <= depts
    assert {n[0] for n in nirs} == {"1", "2"}
    assert any(n[5:8] == "971" for n in nirs)


def test_patient_identity_is_qualified_with_an_ipp_and_accented_names(bundles: list[dict]) -> None:
    all_names = []
    for patient in resources(bundles, "Patient"):
        reliability = next(
            e for e in patient["extension"] if e["url"].endswith("fr-core-identity-reliability")
        )
        status = next(e for e in reliability["extension"] if e["url"] == "identityStatus")
        assert status["valueCoding"]["code"] == "QUAL"
        ipp = next(i for i in patient["identifier"] if i["type"]["coding"][0]["code"] == "PI")
        assert ipp["use"] == "usual" and ipp["value"].isdigit()
        official = next(n for n in patient["name"] if n["use"] == "official")
        assert len(official["given"]) == 1
        all_names.append(official["family"] + " " + official["extension"][0]["valueString"])
    assert any(any(ch in n for ch in "éèëïîçôœÉ") for n in all_names)


def test_practitioners_have_rpps_and_idnps(bundles: list[dict]) -> None:
    seen = set()
    for prac in resources(bundles, "Practitioner"):
        ids = {i["system"]: i for i in prac["identifier"]}
        rpps = ids[RPPS]["value"]
        assert len(rpps) == 11 and rpps.isdigit() and demo.luhn_valid(rpps)
        assert ids[RPPS]["type"]["coding"][0]["code"] == "RPPS"
        assert ids[IDNPS]["value"] == "8" + rpps
        assert ids[IDNPS]["type"]["coding"][0]["code"] == "IDNPS"
        assert rpps not in seen
        seen.add(rpps)


def test_practitioner_roles_use_g15_and_r38(bundles: list[dict]) -> None:
    professions = Counter()
    for role in resources(bundles, "PractitionerRole"):
        code = role["code"][0]["coding"][0]
        assert code["system"] == TRE_G15
        professions[code["code"]] += 1
        if code["code"] == "10":
            assert role["specialty"][0]["coding"][0]["system"] == TRE_R38
        else:
            assert "specialty" not in role
    assert set(professions) == {"10", "21", "40", "60"}


# -- documents ---------------------------------------------------------------------------------


def test_documents_have_dmp_metadata(bundles: list[dict]) -> None:
    master_ids = []
    for doc in resources(bundles, "DocumentReference"):
        assert doc["status"] == "current"
        type_code = doc["type"]["coding"][0]["code"]
        category = doc["category"][0]["coding"][0]
        assert category["system"] == TRE_A03
        assert category["code"] == EXPECTED_CLASS[type_code], type_code
        labels = [c["coding"][0] for c in doc["securityLabel"]]
        assert labels[0] == {"system": V3_CONF, "code": "N", "display": "normal"}
        assert all(
            lab["code"] in ("MASQUE_PS", "INVISIBLE_PATIENT", "INVISIBLE_REPRESENTANTS_LEGAUX")
            for lab in labels[1:]
        )
        assert doc["masterIdentifier"]["system"] == "urn:ietf:rfc:3986"
        assert doc["masterIdentifier"]["value"].startswith("urn:oid:2.25.")
        master_ids.append(doc["masterIdentifier"]["value"])
        ctx = doc["context"]
        start = dt.datetime.fromisoformat(ctx["period"]["start"])
        assert (
            start <= dt.datetime.fromisoformat(ctx["period"]["end"]) <= dt.datetime.fromisoformat(doc["date"])
        )
        assert ctx["facilityType"]["coding"][0]["code"] and ctx["practiceSetting"]["coding"][0]["code"]
        attachment = doc["content"][0]["attachment"]
        assert attachment["title"] and attachment["language"] == "fr-FR"
        assert doc["content"][0]["format"]["code"] in (
            "urn:ihe:iti:xds-sd:pdf:2008",
            "urn:ihe:iti:xds-sd:text:2008",
        )
    assert len(set(master_ids)) == len(master_ids)


def test_documents_are_varied_and_some_are_masked(bundles: list[dict]) -> None:
    docs = list(resources(bundles, "DocumentReference"))
    assert len({d["type"]["coding"][0]["code"] for d in docs}) >= 8
    labels = {c["coding"][0]["code"] for d in docs for c in d["securityLabel"]}
    assert "MASQUE_PS" in labels
    types = {d["content"][0]["attachment"]["contentType"] for d in docs}
    assert types == {"application/pdf", "text/plain; charset=utf-8"}


def test_patient_authored_documents_are_advance_directives_of_adults(bundles: list[dict]) -> None:
    for bundle in bundles:
        by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        for doc in resources([bundle], "DocumentReference"):
            author = by_url[doc["author"][0]["reference"]]
            if author["resourceType"] == "Patient":
                assert doc["type"]["coding"][0]["code"] == "EXPPAT_3"
                assert doc["context"]["facilityType"]["coding"][0]["code"] == "EXP_PATIENT"
                assert author["birthDate"] <= f"{demo.REFERENCE_DATE.year - 18}-12-31"
            else:
                assert author["resourceType"] == "Practitioner"
                assert by_url[doc["custodian"]["reference"]]["resourceType"] == "Organization"


def test_attachment_size_and_hash_match_the_binary(bundles: list[dict]) -> None:
    for bundle in bundles:
        by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
        for doc in resources([bundle], "DocumentReference"):
            attachment = doc["content"][0]["attachment"]
            binary = by_url[attachment["url"]]
            data = base64.b64decode(binary["data"], validate=True)
            assert binary["contentType"] == attachment["contentType"]
            assert attachment["size"] == len(data)
            assert attachment["hash"] == base64.b64encode(hashlib.sha1(data).digest()).decode()
            if attachment["contentType"] == "application/pdf":
                assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
                assert 800 < len(data) < 16_000
            else:
                text = data.decode("utf-8")
                assert ins_nir(by_url[doc["subject"]["reference"]])[:1] in text


def test_pdf_padding_reaches_the_target_size() -> None:
    padded = demo.generate(2, seed=1, docs_per_patient=3, pdf_kb=40)
    sizes = [
        d["content"][0]["attachment"]["size"]
        for d in resources(padded, "DocumentReference")
        if d["content"][0]["attachment"]["contentType"] == "application/pdf"
    ]
    assert sizes and all(40 * 1024 <= s <= 44 * 1024 for s in sizes), sizes


# -- determinism -------------------------------------------------------------------------------


def test_same_seed_gives_the_same_bytes(bundles: list[dict]) -> None:
    again = demo.generate(N_PATIENTS, seed=SEED, docs_per_patient=DOCS)
    assert json.dumps(again, sort_keys=True) == json.dumps(bundles, sort_keys=True)


def test_another_seed_gives_other_data(bundles: list[dict]) -> None:
    other = demo.generate(N_PATIENTS, seed=SEED + 1, docs_per_patient=DOCS)
    assert {ins_nir(p) for p in resources(other, "Patient")} != {
        ins_nir(p) for p in resources(bundles, "Patient")
    }


def test_iter_bundles_streams_the_same_data(bundles: list[dict]) -> None:
    assert list(demo.iter_bundles(N_PATIENTS, SEED, DOCS)) == bundles


def test_options() -> None:
    demo_ins = demo.generate(2, seed=1, docs_per_patient=0, ins_system="demo", patients_per_bundle=1)
    assert len(demo_ins) == 3
    patient = next(resources(demo_ins, "Patient"))
    ins = patient["identifier"][0]
    assert ins["system"] == "urn:oid:1.2.250.1.213.1.4.11"
    assert ins["type"]["coding"][0]["code"] == "INS-NIR-DEMO"
    assert demo.generate(0) == []
    with pytest.raises(ValueError):
        demo.generate(1, ins_system="nope")


# -- command line and loader ---------------------------------------------------------------------


def test_cli_writes_bundle_files(tmp_path: Path) -> None:
    assert demo.main(["--patients", "3", "--seed", "5", "--out", str(tmp_path)]) == 0
    files = sorted(tmp_path.glob("bundle-*.json"))
    assert [f.name for f in files] == ["bundle-0000.json", "bundle-0001.json"]
    written = [json.loads(f.read_text(encoding="utf-8")) for f in files]
    assert written == demo.generate(3, seed=5)


class _FakeServer:
    """A loopback HTTP server that records POSTed bundles and answers like a FHIR server."""

    def __init__(self, reject_at: int | None = None) -> None:
        self.received: list[tuple[dict[str, str], dict]] = []
        self.reject_at = reject_at
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    server.received.append((dict(self.headers), body))
                    n = len(server.received)
                if server.reject_at is not None and n - 1 == server.reject_at:
                    status, payload = (
                        422,
                        {
                            "resourceType": "OperationOutcome",
                            "issue": [
                                {"severity": "error", "code": "invariant", "diagnostics": "NIR key is wrong"}
                            ],
                        },
                    )
                else:
                    status, payload = (
                        200,
                        {
                            "resourceType": "Bundle",
                            "type": "transaction-response",
                            "entry": [{"response": {"status": "201 Created"}} for _ in body["entry"]],
                        },
                    )
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("concurrency", [1, 3])
def test_loader_posts_every_bundle_as_fhir_json(concurrency: int) -> None:
    bundles = demo.generate(50, seed=2, docs_per_patient=1, patients_per_bundle=10)
    with _FakeServer() as server:
        stats = demo.load(bundles, server.url, token="secret", concurrency=concurrency, progress=False)
    assert stats.bundles == len(bundles) == len(server.received)
    assert stats.resources == sum(len(b["entry"]) for b in bundles)
    assert stats.resources_per_second > 0
    headers, first = server.received[0]
    assert first == bundles[0]  # the shared organisations go first, alone
    assert sorted(json.dumps(b, sort_keys=True) for _, b in server.received) == sorted(
        json.dumps(b, sort_keys=True) for b in bundles
    )
    for headers, _ in server.received:
        assert headers["Content-Type"] == "application/fhir+json"
        assert headers["Authorization"] == "Bearer secret"


def test_loader_stops_on_a_rejected_bundle_with_its_operation_outcome() -> None:
    bundles = demo.generate(60, seed=2, docs_per_patient=1, patients_per_bundle=10)
    with _FakeServer(reject_at=2) as server, pytest.raises(demo.BundleRejected) as info:
        demo.load(bundles, server.url, progress=False)
    assert info.value.status == 422
    assert info.value.outcome["issue"][0]["diagnostics"] == "NIR key is wrong"
    assert len(server.received) == 3  # nothing posted after the rejection


def test_cli_load_reports_a_rejection_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with _FakeServer(reject_at=0) as server:
        code = demo.main(["--patients", "2", "--load", server.url, "--no-progress"])
    assert code == 1
    err = capsys.readouterr().err
    assert "rejected (HTTP 422)" in err and "NIR key is wrong" in err


def test_cli_load_reports_the_rate(capsys: pytest.CaptureFixture[str]) -> None:
    with _FakeServer() as server:
        code = demo.main(["--patients", "4", "--load", server.url, "--concurrency", "2", "--no-progress"])
    assert code == 0
    assert "resources/s" in capsys.readouterr().err
