#!/usr/bin/env python3
"""Realistic, deterministic French DMP demo data: FHIR R4 transaction Bundles, and a loader.

What it makes, for a given seed (same seed, same bytes):

- ``Organization``: hospitals, clinics, laboratories, imaging centres, pharmacies (idNat_Struct
  ``urn:oid:1.2.250.1.71.4.2.2`` = ``1`` + FINESS, plus the FINESS itself) and practices
  (idNat_Struct ``3`` + SIRET, plus the SIRET), in real French cities including Corsica and
  the overseas departments.
- ``Practitioner`` (RPPS + IDNPS ``8`` + RPPS) and ``PractitionerRole`` (profession TRE_G15,
  specialty TRE_R38 for doctors, organisation).
- ``Patient``: INS-NIR with a valid key (``fhir_server.fhir.nir``), IPP, French names with accents,
  birth date / sex / birth place consistent with the NIR, the FR Core identity-reliability
  extension (status ``QUAL``), a general practitioner, an address.
- ``DocumentReference`` + ``Binary``: DMP type codes (LOINC / TRE_A05) with the class (TRE_A03)
  that ASS_X16 associates to them, confidentiality ``N`` plus sometimes a TRE_A07 visibility flag,
  facility type / practice setting, ``masterIdentifier``, and a real PDF (fpdf2) or UTF-8 text
  letter whose size and SHA-1 are in the attachment.

The first bundle holds the shared organisations (hospitals that several bundles refer to); every
later bundle holds about ``patients_per_bundle`` patients with their documents and repeats the
directory entries it refers to, so that all its references resolve inside the bundle. Directory
entries (Organization) carry ``request.ifNoneExist`` on their idNat_Struct identifier, so that a
server that supports conditional create keeps one copy of each.

Usage::

    python scripts/demo_data.py --patients 200 --seed 42 --out /tmp/demo
    python scripts/demo_data.py --patients 200 --load http://localhost:8080/fhir --concurrency 4
    python scripts/demo_data.py --patients 1000 --pdf-kb 100 --load http://localhost:8080/fhir

Importable: ``generate(n_patients, seed=42, docs_per_patient=3)`` returns the list of bundles;
``iter_bundles(...)`` yields them one by one; ``load(bundles, base_url, ...)`` posts them.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import random
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_server.fhir.nir import make_nir

Json = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Code systems and identifier systems (see shared/dmp-domain.md and the ANS/FR Core sources)
# --------------------------------------------------------------------------------------------
NOS = "https://mos.esante.gouv.fr/NOS"
TRE_G15 = f"{NOS}/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
TRE_R38 = f"{NOS}/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
TRE_R02 = f"{NOS}/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
TRE_A00 = f"{NOS}/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
TRE_A01 = f"{NOS}/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
TRE_A03 = f"{NOS}/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
TRE_A05 = f"{NOS}/TRE_A05-TypeDocComplementaire/FHIR/TRE-A05-TypeDocComplementaire"
TRE_A07 = f"{NOS}/TRE_A07-StatutVisibiliteDocument/FHIR/TRE-A07-StatutVisibiliteDocument"
TRE_A11 = f"{NOS}/TRE_A11-IheFormatCode/FHIR/TRE-A11-IheFormatCode"
TRE_R13 = f"{NOS}/TRE_R13-CommuneOM/FHIR/TRE-R13-CommuneOM"
LOINC = "http://loinc.org"
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
FR_CORE = "https://hl7.fr/ig/fhir/core"
FR_V2_0203 = f"{FR_CORE}/CodeSystem/fr-core-cs-v2-0203"
FR_IDENTITY_RELIABILITY = f"{FR_CORE}/StructureDefinition/fr-core-identity-reliability"
FR_IDENTITY_STATUS = f"{FR_CORE}/CodeSystem/fr-core-cs-identity-status"
FR_METHOD_COLLECTION = f"{FR_CORE}/CodeSystem/fr-core-cs-method-collection"
FR_VALIDATION_MODE = f"{FR_CORE}/CodeSystem/fr-core-cs-mode-validation-identity"
FR_BIRTH_LIST_GIVEN_NAME = f"{FR_CORE}/StructureDefinition/fr-core-patient-birth-list-given-name"
FR_INSEE_CODE = f"{FR_CORE}/StructureDefinition/fr-core-address-insee-code"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"

IDNPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
RPPS_SYSTEM = "https://rpps.esante.gouv.fr"
IDNST_SYSTEM = "urn:oid:1.2.250.1.71.4.2.2"  # idNat_Struct: "1" + FINESS, "3" + SIRET...
FINESS_SYSTEM = "https://finess.esante.gouv.fr"
SIRET_SYSTEM = "https://sirene.fr"

# INS-NIR (real), INS-NIR-TEST and INS-NIR-DEMO: the data is fictitious, so a deployment may prefer
# the test or demo OIDs (FR Core); the DMP production OID is the default, as the server expects it.
INS_SYSTEMS: dict[str, tuple[str, str]] = {
    "nir": ("urn:oid:1.2.250.1.213.1.4.8", "INS-NIR"),
    "test": ("urn:oid:1.2.250.1.213.1.4.10", "INS-NIR-TEST"),
    "demo": ("urn:oid:1.2.250.1.213.1.4.11", "INS-NIR-DEMO"),
}

# The generator's "today": fixed so that a seed always gives the same data.
REFERENCE_DATE = dt.date(2025, 6, 30)

# --------------------------------------------------------------------------------------------
# Reference data: places, names
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class City:
    name: str
    insee: str  # 5-character INSEE (COG) code: "33063", "2A004", "97105"
    postal: str
    chu: bool = False  # has a university hospital

    @property
    def dept(self) -> str:
        """The department as in the NIR: 2 characters ("97" for 971..976)."""
        return self.insee[:2]

    @property
    def commune(self) -> str:
        return self.insee[2:]

    @property
    def overseas(self) -> bool:
        return self.insee.startswith("97")

    @property
    def of(self) -> str:
        """The name after "de", with French elision and contraction: "d'Amiens", "du Havre"."""
        n = self.name
        if n.startswith("Le "):
            return f"du {n[3:]}"
        if n.startswith("Les "):
            return f"des {n[4:]}"
        if n[0] in "AEIOUYÉÈÊÂÎÔ":
            return f"d'{n}"
        return f"de {n}"


CITIES: tuple[City, ...] = (
    City("Paris", "75056", "75015", True),
    City("Marseille", "13055", "13005", True),
    City("Lyon", "69123", "69003", True),
    City("Toulouse", "31555", "31000", True),
    City("Nice", "06088", "06000", True),
    City("Nantes", "44109", "44000", True),
    City("Strasbourg", "67482", "67000", True),
    City("Montpellier", "34172", "34000", True),
    City("Bordeaux", "33063", "33000", True),
    City("Lille", "59350", "59000", True),
    City("Rennes", "35238", "35000", True),
    City("Reims", "51454", "51100", True),
    City("Saint-Étienne", "42218", "42000", True),
    City("Grenoble", "38185", "38000", True),
    City("Dijon", "21231", "21000", True),
    City("Angers", "49007", "49000", True),
    City("Nîmes", "30189", "30000", True),
    City("Clermont-Ferrand", "63113", "63000", True),
    City("Brest", "29019", "29200", True),
    City("Tours", "37261", "37000", True),
    City("Amiens", "80021", "80000", True),
    City("Limoges", "87085", "87000", True),
    City("Besançon", "25056", "25000", True),
    City("Rouen", "76540", "76000", True),
    City("Caen", "14118", "14000", True),
    City("Poitiers", "86194", "86000", True),
    City("Le Havre", "76351", "76600"),
    City("Toulon", "83137", "83000"),
    City("Le Mans", "72181", "72000"),
    City("Aix-en-Provence", "13001", "13100"),
    City("Metz", "57463", "57000"),
    City("Nancy", "54395", "54000", True),
    City("Perpignan", "66136", "66000"),
    City("Orléans", "45234", "45000"),
    City("Pau", "64445", "64000"),
    City("La Rochelle", "17300", "17000"),
    City("Annecy", "74010", "74000"),
    City("Quimper", "29232", "29000"),
    City("Valence", "26362", "26000"),
    City("Avignon", "84007", "84000"),
    City("Mulhouse", "68224", "68100"),
    City("Bayonne", "64102", "64100"),
    City("Chambéry", "73065", "73000"),
    City("Troyes", "10387", "10000"),
    City("Angoulême", "16015", "16000"),
    City("Ajaccio", "2A004", "20000"),
    City("Bastia", "2B033", "20200"),
    City("Porto-Vecchio", "2A247", "20137"),
    City("Corte", "2B096", "20250"),
    City("Pointe-à-Pitre", "97120", "97110", True),
    City("Basse-Terre", "97105", "97100"),
    City("Les Abymes", "97101", "97139"),
    City("Fort-de-France", "97209", "97200", True),
    City("Saint-Denis", "97411", "97400", True),
    City("Cayenne", "97302", "97300"),
)
CITY_BY_INSEE = {c.insee: c for c in CITIES}
CORSICA = tuple(c for c in CITIES if c.dept in ("2A", "2B"))
GUADELOUPE = tuple(c for c in CITIES if c.insee.startswith("971"))
MAINLAND = tuple(c for c in CITIES if c.dept not in ("2A", "2B") and not c.overseas)
OVERSEAS = tuple(c for c in CITIES if c.overseas)
# Paris, Marseille and Lyon births are registered by arrondissement (the NIR holds it).
ARRONDISSEMENTS = {
    "75056": [f"751{n:02d}" for n in range(1, 21)],
    "13055": [f"132{n:02d}" for n in range(1, 17)],
    "69123": [f"6938{n}" for n in range(1, 10)],
}
ARRONDISSEMENT_CITY = {code: CITY_BY_INSEE[city] for city, codes in ARRONDISSEMENTS.items() for code in codes}
# Births abroad: department 99 and the INSEE country code (COG).
COUNTRIES: tuple[tuple[str, str], ...] = (
    ("99350", "Maroc"),
    ("99352", "Algérie"),
    ("99351", "Tunisie"),
    ("99139", "Portugal"),
    ("99127", "Italie"),
    ("99134", "Espagne"),
    ("99131", "Belgique"),
    ("99341", "Sénégal"),
    ("99109", "Allemagne"),
)
# UTC offsets of the overseas departments (no daylight saving time).
OVERSEAS_OFFSETS = {"971": -4, "972": -4, "973": -3, "974": 4, "976": 3}

MALE_GIVEN = (
    "François",
    "Jérôme",
    "Stéphane",
    "Frédéric",
    "Benoît",
    "Loïc",
    "Gaël",
    "Noël",
    "Raphaël",
    "Théo",
    "Mathéo",
    "Hugo",
    "Louis",
    "Jean",
    "Pierre",
    "Michel",
    "Philippe",
    "Alain",
    "Nicolas",
    "Thomas",
    "Julien",
    "Antoine",
    "Léo",
    "Gabriel",
    "Arthur",
    "Éric",
    "Hervé",
    "André",
    "René",
    "Jean-Baptiste",
    "Jean-Marc",
    "Étienne",
    "Joël",
    "Maël",
    "Cédric",
    "Sébastien",
    "Grégoire",
)
FEMALE_GIVEN = (
    "Hélène",
    "Élodie",
    "Cécile",
    "Gaëlle",
    "Anaïs",
    "Chloé",
    "Léa",
    "Zoé",
    "Maëlle",
    "Noémie",
    "Bérénice",
    "Agnès",
    "Françoise",
    "Geneviève",
    "Mélanie",
    "Inès",
    "Océane",
    "Clémence",
    "Joséphine",
    "Héloïse",
    "Céline",
    "Séverine",
    "Marie",
    "Camille",
    "Manon",
    "Emma",
    "Louise",
    "Sophie",
    "Isabelle",
    "Nathalie",
    "Valérie",
    "Sylvie",
    "Monique",
    "Josée",
    "Anne-Sophie",
    "Marie-Hélène",
    "Aurélie",
    "Émilie",
    "Noëlle",
    "Lætitia",
)
FAMILY_NAMES = (
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefèvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefebvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
    "Legrand",
    "Garnier",
    "Faure",
    "Rousseau",
    "Blanc",
    "Guérin",
    "Muller",
    "Henry",
    "Roussel",
    "Nicolas",
    "Perrin",
    "Morin",
    "Mathieu",
    "Clément",
    "Gauthier",
    "Dumont",
    "Lopez",
    "Fontaine",
    "Chevalier",
    "Robin",
    "Noël",
    "Gérard",
    "Bénard",
    "Lemaître",
    "Pelletier",
    "Bouvier",
    "Hébert",
    "Lebœuf",
    "Côté",
    "Béranger",
    "Frémont",
    "Santoni",
    "Casanova",
    "Albertini",
    "Luciani",
    "Paoli",
    "Jean-Baptiste",
    "Céleste",
    "Hoarau",
    "Payet",
    "Le Gall",
    "Le Goff",
    "Kerbrat",
    "Ménard",
    "Aubé",
)
STREETS = (
    "rue de la République",
    "avenue Jean Jaurès",
    "rue Victor Hugo",
    "boulevard Gambetta",
    "place de l'Église",
    "rue des Écoles",
    "chemin des Vignes",
    "allée des Tilleuls",
    "rue Pasteur",
    "impasse des Lilas",
    "rue du Général de Gaulle",
    "quai Saint-Nicolas",
    "rue de la Gare",
    "avenue de la Libération",
    "rue Émile Zola",
    "boulevard Voltaire",
    "rue du Moulin",
    "rue des Châtaigniers",
    "avenue Foch",
    "rue Notre-Dame",
)
CLINICS = (
    "Clinique Saint-Joseph",
    "Clinique du Parc",
    "Polyclinique Sainte-Marguerite",
    "Clinique des Cèdres",
    "Clinique Pasteur",
)
PHARMACIES = (
    "Pharmacie de la Gare",
    "Pharmacie du Marché",
    "Grande Pharmacie",
    "Pharmacie des Halles",
    "Pharmacie du Centre",
)
MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)

# --------------------------------------------------------------------------------------------
# Professions, specialties, sectors
# --------------------------------------------------------------------------------------------

PROFESSIONS = {
    "10": "Médecin",
    "21": "Pharmacien",
    "40": "Chirurgien-Dentiste",
    "60": "Infirmier",
}
SPECIALTIES = {
    "SM54": "Médecine générale (SM)",
    "SM26": "Qualifié en Médecine générale (SM)",
    "SM03": "Biologie médicale (SM)",
    "SM04": "Cardiologie et Maladies vasculaires (SM)",
    "SM05": "Chirurgie générale (SM)",
    "SM08": "Chirurgie orthopédique et Traumatologie (SM)",
    "SM44": "Radio-diagnostic (SM)",
    "SM59": "Médecine d'urgence (SM)",
}
SECTORS = {
    "SA01": "Etablissement public de santé",
    "SA04": "Etablissement privé non PSPH",
    "SA07": "Cabinet individuel",
    "SA08": "Cabinet de groupe",
    "SA25": "Laboratoire de biologie médicale",
    "SA33": "Pharmacie d'officine",
    "SA52": "Maison de santé ou Pôle de santé",
}
SETTINGS = {"AMBULATOIRE": "Ambulatoire", "ETABLISSEMENT": "Etablissement de santé"}
CLASSES = {
    "10": "Compte rendu",
    "11": "Synthèse",
    "31": "Imagerie médicale",
    "42": "Prescription",
    "43": "Dispensation",
    "52": "Certificat, déclaration",
    "90": "Autres documents déposés par le patient",
}
VISIBILITY = {
    "MASQUE_PS": "Masqué aux professionnels de santé",
    "INVISIBLE_PATIENT": "Non visible par le patient",
    "INVISIBLE_REPRESENTANTS_LEGAUX": "Non visible par les représentants légaux du patient",
}
FORMATS = {
    "application/pdf": ("urn:ihe:iti:xds-sd:pdf:2008", "Document à corps non structuré en Pdf/A-1"),
    "text/plain; charset=utf-8": (
        "urn:ihe:iti:xds-sd:text:2008",
        "Document à corps non structuré en texte brut",
    ),
}


@dataclass(frozen=True)
class DocKind:
    """One DMP document type (J66), its class (J57 via ASS_X16) and who writes it."""

    key: str
    type_system: str
    type_code: str
    type_display: str
    class_code: str
    authors: tuple[str, ...]  # roles in the bundle's directory, or "patient"
    weight: int
    text_ratio: float = 0.15  # share of text/plain rather than PDF
    adult_only: bool = False
    once: bool = False  # at most one per patient


DOC_KINDS: tuple[DocKind, ...] = (
    DocKind(
        "consultation",
        LOINC,
        "11488-4",
        "CR ou fiche de consultation ou de visite",
        "10",
        ("gp", "gp", "cardiologist", "dentist"),
        30,
    ),
    DocKind("biologie", LOINC, "11502-2", "CR d'examens biologiques", "10", ("biologist",), 15),
    DocKind("imagerie", LOINC, "18748-4", "CR d'imagerie médicale", "31", ("radiologist",), 12),
    DocKind("ordonnance", LOINC, "57833-6", "Prescription de produits de santé", "42", ("gp",), 15),
    DocKind("vsm", LOINC, "60591-5", "Synthèse médicale", "11", ("gp",), 6, once=True),
    DocKind("synthese_episode", LOINC, "34133-9", "Synthèse d'épisode de soins", "11", ("cardiologist",), 4),
    DocKind(
        "lettre_sortie",
        LOINC,
        "11490-0",
        "Lettre de liaison à la sortie d'un établissement de soins",
        "10",
        ("cardiologist", "surgeon"),
        5,
    ),
    DocKind("cr_operatoire", LOINC, "34874-8", "CR opératoire", "10", ("surgeon",), 3),
    DocKind("urgences", LOINC, "15507-7", "CR de passage aux urgences", "10", ("emergency",), 4),
    DocKind("vaccination", LOINC, "87273-9", "Note de vaccination", "52", ("gp", "pharmacist", "nurse"), 5),
    DocKind("dispensation", LOINC, "60593-1", "Dispensation médicamenteuse", "43", ("pharmacist",), 5),
    DocKind(
        "directives",
        TRE_A05,
        "EXPPAT_3",
        "Directives anticipées",
        "90",
        ("patient",),
        3,
        text_ratio=0.7,
        adult_only=True,
        once=True,
    ),
)
DOC_KIND_BY_KEY = {k.key: k for k in DOC_KINDS}

# The practitioners of one bundle: role -> (profession, specialty or None, organisation kind).
STAFF: dict[str, tuple[str, str | None, str]] = {
    "gp": ("10", "SM54", "cabinet_mg"),
    "gp2": ("10", "SM26", "msp"),
    "dentist": ("40", None, "cabinet_dentaire"),
    "pharmacist": ("21", None, "pharmacie"),
    "nurse": ("60", None, "cabinet_infirmier"),
    "biologist": ("10", "SM03", "laboratoire"),
    "radiologist": ("10", "SM44", "imagerie"),
    "cardiologist": ("10", "SM04", "hopital"),
    "surgeon": ("10", "SM08", "clinique"),
    "emergency": ("10", "SM59", "hopital"),
}
# Organisation kinds: sector (TRE_R02), practice setting (TRE_A01), identified by FINESS or SIRET.
ORG_KINDS: dict[str, tuple[str, str, str]] = {
    "hopital": ("SA01", "ETABLISSEMENT", "finess"),
    "clinique": ("SA04", "ETABLISSEMENT", "finess"),
    "laboratoire": ("SA25", "AMBULATOIRE", "finess"),
    "pharmacie": ("SA33", "AMBULATOIRE", "finess"),
    "imagerie": ("SA08", "AMBULATOIRE", "siret"),
    "cabinet_mg": ("SA07", "AMBULATOIRE", "siret"),
    "msp": ("SA52", "AMBULATOIRE", "siret"),
    "cabinet_dentaire": ("SA07", "AMBULATOIRE", "siret"),
    "cabinet_infirmier": ("SA08", "AMBULATOIRE", "siret"),
}

# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def luhn_digit(digits: str) -> int:
    """The Luhn check digit to append to ``digits`` (as for SIREN/SIRET and RPPS numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # doubled positions, counting from the digit left of the check digit
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10


def luhn_valid(number: str) -> bool:
    return number.isdigit() and luhn_digit(number[:-1]) == int(number[-1])


def _last_sunday(year: int, month: int) -> dt.date:
    day = dt.date(year, month + 1, 1) - dt.timedelta(days=1) if month < 12 else dt.date(year, 12, 31)
    return day - dt.timedelta(days=(day.weekday() + 1) % 7)


def utc_offset_hours(city: City, day: dt.date) -> int:
    """Local UTC offset: Europe/Paris rules for metropolitan France, fixed for overseas."""
    if city.overseas:
        return OVERSEAS_OFFSETS.get(city.insee[:3], -4)
    # Summer time from the last Sunday of March to the last Sunday of October (day granularity).
    return 2 if _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10) else 1


def fhir_instant(moment: dt.datetime, city: City) -> str:
    """``2025-03-12T10:42:00+01:00`` for a naive local datetime in ``city``."""
    tz = dt.timezone(dt.timedelta(hours=utc_offset_hours(city, moment.date())))
    return moment.replace(tzinfo=tz).isoformat(timespec="seconds")


def date_fr(day: dt.date) -> str:
    return f"{day.day} {MONTHS_FR[day.month - 1]} {day.year}"


def _official_identifier(type_code: str, system: str, value: str) -> Json:
    return {"use": "official", "type": concept(FR_V2_0203, type_code), "system": system, "value": value}


def sha1_b64(data: bytes) -> str:
    """``Attachment.hash``: base64 of the SHA-1 digest of the content."""
    return base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def ref(full_url: str, display: str | None = None) -> Json:
    out: Json = {"reference": full_url}
    if display:
        out["display"] = display
    return out


def coding(system: str, code: str, display: str | None = None) -> Json:
    out: Json = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str | None = None) -> Json:
    return {"coding": [coding(system, code, display)]}


# --------------------------------------------------------------------------------------------
# Documents: text content and rendering
# --------------------------------------------------------------------------------------------


@dataclass
class Letter:
    """The human-readable content of one document, rendered to PDF or text."""

    sender: list[str]
    title: str
    patient_line: str
    sections: list[tuple[str, str]]
    table: list[tuple[str, str, str, str]] = field(default_factory=list)  # analyte, value, unit, ref
    place_date: str = ""
    signature: str = ""


def render_text(letter: Letter) -> bytes:
    lines = [*letter.sender, "", letter.title.upper(), "", letter.patient_line, ""]
    for heading, text in letter.sections:
        if heading:
            lines.append(heading)
        lines.append(text)
        lines.append("")
    if letter.table:
        lines.append(f"{'Analyse':<34}{'Résultat':>10} {'Unité':<10} Valeurs de référence")
        for name, value, unit, normal in letter.table:
            lines.append(f"{name:<34}{value:>10} {unit:<10} {normal}")
        lines.append("")
    if letter.place_date:
        lines.append(letter.place_date)
    if letter.signature:
        lines.append(letter.signature)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _cp1252(text: str) -> str:
    """The PDF core fonts cover windows-1252: replace anything else rather than fail."""
    return text.encode("cp1252", errors="replace").decode("cp1252")


def render_pdf(letter: Letter, created: dt.datetime, pad_to: int = 0, annex_seed: int = 0) -> bytes:
    """A real one-page PDF letter (fpdf2, core fonts), padded up to ``pad_to`` bytes.

    Padding adds a second page, "document numérisé", holding a grainy grey scan-like image whose
    pixels are pseudo-random (so that compression cannot shrink it): the size is reached in a
    few milliseconds, within a few percent. The output is deterministic for the same inputs and
    fpdf2 version.
    """
    base = _build_pdf(letter, created, 0, annex_seed)
    if pad_to <= len(base):
        return base
    pixels = int((pad_to - len(base)) / 0.76) + 1  # 6 random bits per pixel deflate to ~0.76 byte
    out = base
    for _ in range(5):
        out = _build_pdf(letter, created, pixels, annex_seed)
        if pad_to <= len(out) <= pad_to * 1.02 + 2048:
            break
        grown = max(len(out) - len(base), 1)
        pixels = int(pixels * (pad_to - len(base)) / grown * 1.005) + 64
    return out


_GRAIN = bytes(0xC0 | (i & 0x3F) for i in range(256))


def _build_pdf(letter: Letter, created: dt.datetime, annex_pixels: int, annex_seed: int) -> bytes:
    from fpdf import FPDF  # imported lazily: generating without PDFs (or importing) stays cheap

    pdf = FPDF(format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_creation_date(created.replace(tzinfo=dt.UTC))
    pdf.set_producer("dmp-fhir demo data (fpdf2)")
    pdf.set_creator("dmp-fhir demo data")
    pdf.set_title(_cp1252(letter.title))
    pdf.set_author(_cp1252(letter.signature or letter.sender[0]))
    pdf.set_lang("fr-FR")
    pdf.set_auto_page_break(True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 10)
    for i, line in enumerate(letter.sender):
        pdf.cell(0, 5, _cp1252(line), new_x="LMARGIN", new_y="NEXT")
        if i == 0:
            pdf.set_font("Helvetica", size=9)
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 14)
    pdf.multi_cell(0, 7, _cp1252(letter.title), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "I", 10)
    pdf.multi_cell(0, 5, _cp1252(letter.patient_line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    for heading, text in letter.sections:
        if heading:
            pdf.set_font("Helvetica", "B", 11)
            pdf.cell(0, 6, _cp1252(heading), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=11)
        pdf.multi_cell(0, 5.5, _cp1252(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
    if letter.table:
        pdf.set_font("Helvetica", "B", 9)
        widths = (70, 25, 25, 60)
        for w, h in zip(widths, ("Analyse", "Résultat", "Unité", "Valeurs de référence"), strict=True):
            pdf.cell(w, 6, _cp1252(h), border="B")
        pdf.ln(6)
        pdf.set_font("Helvetica", size=9)
        for row in letter.table:
            for w, cell in zip(widths, row, strict=True):
                pdf.cell(w, 5, _cp1252(cell))
            pdf.ln(5)
        pdf.ln(3)
    pdf.set_font("Helvetica", size=11)
    if letter.place_date:
        pdf.cell(0, 6, _cp1252(letter.place_date), align="R", new_x="LMARGIN", new_y="NEXT")
    if letter.signature:
        pdf.cell(0, 6, _cp1252(letter.signature), align="R", new_x="LMARGIN", new_y="NEXT")
    if annex_pixels:
        from PIL import Image  # a dependency of fpdf2

        width = max(64, min(1240, int(annex_pixels**0.5 * 0.75)))
        height = max(1, -(-annex_pixels // width))
        raw = random.Random(annex_seed).randbytes(width * height)
        grain = raw.translate(_GRAIN)  # light grey, 6 random bits per pixel
        image = Image.frombytes("L", (width, height), grain)
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, "Annexe : document numérisé", new_x="LMARGIN", new_y="NEXT")
        box_w, box_h = 190.0, 255.0
        img_w = min(box_w, box_h * width / height)
        pdf.image(image, x=10, y=28, w=img_w, h=img_w * height / width)
    return bytes(pdf.output())


# Analyte, unit, reference low, reference high.
LAB_TESTS: tuple[tuple[str, str, float, float], ...] = (
    ("Hémoglobine", "g/dL", 12.0, 16.0),
    ("Leucocytes", "G/L", 4.0, 10.0),
    ("Plaquettes", "G/L", 150.0, 400.0),
    ("Glycémie à jeun", "mmol/L", 3.9, 5.8),
    ("Créatinine", "µmol/L", 45.0, 104.0),
    ("DFG (CKD-EPI)", "mL/min/1,73m²", 90.0, 120.0),
    ("Cholestérol LDL", "g/L", 0.5, 1.6),
    ("Triglycérides", "g/L", 0.35, 1.5),
    ("TSH", "mUI/L", 0.4, 4.0),
    ("CRP", "mg/L", 0.0, 5.0),
    ("HbA1c", "%", 4.0, 6.0),
    ("Potassium", "mmol/L", 3.5, 5.0),
    ("Sodium", "mmol/L", 136.0, 145.0),
    ("ASAT", "UI/L", 5.0, 40.0),
    ("ALAT", "UI/L", 5.0, 40.0),
    ("Ferritine", "µg/L", 20.0, 300.0),
)
CONSULT_REASONS = (
    (
        "Suivi d'hypertension artérielle",
        "Tension artérielle contrôlée sous traitement, poursuite à l'identique.",
    ),
    (
        "Toux persistante depuis trois semaines",
        "Auscultation pulmonaire normale. Radiographie thoracique demandée.",
    ),
    (
        "Lombalgie aiguë après un effort de port de charge",
        "Pas de signe neurologique. Antalgiques, repos relatif, kinésithérapie si persistance.",
    ),
    ("Bilan annuel", "Examen clinique sans particularité. Bilan biologique de contrôle prescrit."),
    (
        "Renouvellement du traitement d'un diabète de type 2",
        "HbA1c à 6,9 %. Poursuite de la metformine, conseils hygiéno-diététiques.",
    ),
    (
        "Douleurs thoraciques atypiques",
        "ECG sans anomalie. Avis cardiologique demandé pour épreuve d'effort.",
    ),
    ("Angine érythémateuse", "Test de diagnostic rapide négatif. Traitement symptomatique."),
    ("Palpitations", "ECG en rythme sinusal. Holter ECG de 24 heures programmé."),
    (
        "Contrôle dentaire et détartrage",
        "Pas de lésion carieuse active. Détartrage réalisé, contrôle dans un an.",
    ),
)
MEDICATIONS = (
    ("PARACÉTAMOL 1 g, comprimé", "1 comprimé jusqu'à 3 fois par jour si douleur, pendant 5 jours"),
    ("AMLODIPINE 5 mg, gélule", "1 gélule le matin, traitement de 3 mois"),
    ("METFORMINE 850 mg, comprimé", "1 comprimé matin et soir au cours des repas, 3 mois"),
    ("RAMIPRIL 5 mg, comprimé", "1 comprimé le matin, 3 mois"),
    ("ATORVASTATINE 20 mg, comprimé", "1 comprimé le soir, 3 mois"),
    ("LÉVOTHYROXINE 75 µg, comprimé", "1 comprimé le matin à jeun, 3 mois"),
    ("AMOXICILLINE 1 g, comprimé", "1 comprimé matin et soir pendant 6 jours"),
    ("IBUPROFÈNE 400 mg, comprimé", "1 comprimé 3 fois par jour au cours des repas, 3 jours"),
    ("OMÉPRAZOLE 20 mg, gélule", "1 gélule le matin avant le repas, 1 mois"),
)
IMAGING = (
    (
        "Radiographie thoracique de face",
        "Pas de foyer parenchymateux. Cœur de taille normale. Culs-de-sac libres.",
    ),
    (
        "Échographie abdominale",
        "Foie de taille et d'échostructure normales. Vésicule alithiasique. Reins sans dilatation.",
    ),
    (
        "IRM du genou droit",
        "Fissure horizontale de la corne postérieure du ménisque interne. Pas d'épanchement.",
    ),
    (
        "Scanner cérébral sans injection",
        "Pas de lésion hémorragique ni d'effet de masse. Ventricules de taille normale.",
    ),
    (
        "Mammographie bilatérale de dépistage",
        "Seins de densité B. Pas d'anomalie suspecte. Classification ACR 1.",
    ),
    ("Radiographie du poignet gauche", "Fracture non déplacée de l'extrémité distale du radius."),
)
OPERATIONS = (
    ("Arthroscopie du genou droit", "Méniscectomie partielle interne sous arthroscopie. Suites simples."),
    ("Cholécystectomie par cœlioscopie", "Vésicule lithiasique retirée sans incident. Drain retiré à J1."),
    (
        "Appendicectomie par cœlioscopie",
        "Appendice inflammatoire non perforé. Antibioprophylaxie per-opératoire.",
    ),
    ("Cure de hernie inguinale droite", "Mise en place d'une prothèse prépéritonéale. Sortie le jour même."),
)
EMERGENCIES = (
    (
        "Entorse de la cheville gauche",
        "Radiographies sans fracture. Attelle, glace, reprise d'appui progressive.",
    ),
    (
        "Douleur abdominale de la fosse iliaque droite",
        "Bilan biologique et échographie rassurants. Retour à domicile avec consignes de reconsultation.",
    ),
    (
        "Malaise sans perte de connaissance",
        "ECG et glycémie normaux. Surveillance de 4 heures sans récidive.",
    ),
    ("Plaie de la main droite", "Suture de 4 points. Vaccination antitétanique à jour."),
)
VACCINES = (
    ("Grippe saisonnière", "VAXIGRIP TETRA"),
    ("Covid-19", "COMIRNATY"),
    ("Diphtérie, tétanos, coqueluche, poliomyélite", "BOOSTRIXTETRA"),
    ("Pneumocoque", "PREVENAR 20"),
    ("Zona", "SHINGRIX"),
)
CARDIO_EPISODES = (
    (
        "fibrillation atriale paroxystique",
        "Introduction d'un anticoagulant oral direct et d'un bêtabloquant.",
    ),
    (
        "insuffisance cardiaque décompensée",
        "Adaptation du traitement diurétique, réadaptation cardiaque proposée.",
    ),
    (
        "syndrome coronarien aigu sans sus-décalage du segment ST",
        "Angioplastie avec pose d'un stent actif, double antiagrégation plaquettaire.",
    ),
)


# --------------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------------


@dataclass
class Person:
    sex: int  # 1 male, 2 female (as in the NIR)
    family: str
    given: list[str]

    @property
    def gender(self) -> str:
        return "male" if self.sex == 1 else "female"


@dataclass
class Org:
    full_url: str
    kind: str
    name: str
    city: City
    resource: Json
    if_none_exist: str
    ipp_system: str = ""


@dataclass
class Staff:
    role: str
    full_url: str
    role_full_url: str
    person: Person
    profession: str
    specialty: str | None
    org: Org
    rpps: str

    @property
    def display(self) -> str:
        prefix = "" if self.profession == "60" else "Dr "
        return f"{prefix}{' '.join(self.person.given)} {self.person.family}"


@dataclass
class PatientInfo:
    full_url: str
    person: Person
    birth_date: dt.date
    nir: str
    city: City
    resource: Json

    @property
    def age(self) -> int:
        b, r = self.birth_date, REFERENCE_DATE
        return r.year - b.year - ((r.month, r.day) < (b.month, b.day))

    @property
    def civility(self) -> str:
        if self.age < 18:
            return ""
        return "M." if self.person.sex == 1 else "Mme"


class Generator:
    """Deterministic data generator: every random draw comes from one seeded ``random.Random``."""

    def __init__(
        self,
        n_patients: int,
        seed: int = 42,
        docs_per_patient: int = 3,
        *,
        patients_per_bundle: int = 20,
        pdf_kb: int = 0,
        ins_system: str = "nir",
        conditional: bool = True,
    ) -> None:
        if n_patients < 0 or docs_per_patient < 0 or patients_per_bundle < 1 or pdf_kb < 0:
            raise ValueError("counts must be positive (patients_per_bundle at least 1)")
        if ins_system not in INS_SYSTEMS:
            raise ValueError(f"ins_system must be one of {sorted(INS_SYSTEMS)}")
        self.n_patients = n_patients
        self.docs_per_patient = docs_per_patient
        self.patients_per_bundle = patients_per_bundle
        self.pdf_bytes = pdf_kb * 1024
        self.ins_system, self.ins_type = INS_SYSTEMS[ins_system]
        self.conditional = conditional
        self.rng = random.Random(seed)
        self._used_nirs: set[str] = set()
        self._used_rpps: set[str] = set()
        self._used_numbers: set[str] = set()
        self._patient_index = 0
        self._ipp_counter: dict[str, int] = {}
        # Bundle i's patients live in hub city hubs[i % len(hubs)]; a hub has a hospital shared by
        # all its bundles (decided now, so that the shared-organisations bundle can come first).
        self.hubs: list[City] = self.rng.sample(list(CITIES), len(CITIES))
        self.hospitals: dict[str, Org] = {}
        n_bundles = self.n_patient_bundles
        for city in self.hubs[: min(n_bundles, len(self.hubs))]:
            self.hospitals[city.insee] = self._organization("hopital", city)

    # -- sizes ------------------------------------------------------------------------------

    @property
    def n_patient_bundles(self) -> int:
        return -(-self.n_patients // self.patients_per_bundle)

    # -- identifiers ------------------------------------------------------------------------

    def _uuid(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)

    def _urn(self) -> str:
        return f"urn:uuid:{self._uuid()}"

    def _unique_digits(self, make: Callable[[], str]) -> str:
        while True:
            value = make()
            if value not in self._used_numbers:
                self._used_numbers.add(value)
                return value

    def _rpps(self) -> str:
        def make() -> str:
            body = "10" + f"{self.rng.randrange(10**8):08d}"
            return body + str(luhn_digit(body))

        value = self._unique_digits(make)
        self._used_rpps.add(value)
        return value

    def _finess(self, city: City) -> str:
        # Shaped like a FINESS number: the department (2 characters) then 7 digits.
        return self._unique_digits(lambda: f"{city.dept}{self.rng.randrange(10**7):07d}")

    def _siret(self) -> str:
        def make() -> str:
            siren = f"{self.rng.randrange(10**7, 10**8)}"
            siren += str(luhn_digit(siren))
            body = siren + f"{self.rng.randrange(1, 10**4):04d}"
            return body + str(luhn_digit(body))

        return self._unique_digits(make)

    def _phone(self, mobile: bool = False) -> str:
        # ARCEP ranges reserved for fiction: 01 99 00, 02 61 91, 03 53 01, 04 65 71, 05 36 49, 06 39 98.
        prefix = (
            "06 39 98"
            if mobile
            else self.rng.choice(("01 99 00", "02 61 91", "03 53 01", "04 65 71", "05 36 49"))
        )
        n = self.rng.randrange(10**4)
        return f"{prefix} {n // 100:02d} {n % 100:02d}"

    def _address(self, city: City, use: str = "work") -> Json:
        return {
            "extension": [{"url": FR_INSEE_CODE, "valueCoding": coding(TRE_R13, city.insee)}],
            "use": use,
            "type": "both",
            "line": [f"{self.rng.randint(1, 120)} {self.rng.choice(STREETS)}"],
            "city": city.name,
            "postalCode": city.postal,
            "country": "France",
        }

    def _person(self, sex: int | None = None, n_given: int = 1) -> Person:
        sex = sex or self.rng.choice((1, 2))
        pool = MALE_GIVEN if sex == 1 else FEMALE_GIVEN
        given = self.rng.sample(pool, n_given)
        return Person(sex, self.rng.choice(FAMILY_NAMES), given)

    # -- directory --------------------------------------------------------------------------

    def _organization(self, kind: str, city: City, owner: Person | None = None) -> Org:
        sector, _setting, id_kind = ORG_KINDS[kind]
        full_url = self._urn()
        name = self._org_name(kind, city, owner)
        if id_kind == "finess":  # IDNST = 1 + FINESS
            number = self._finess(city)
            idnst, local = "1" + number, ("FINEG", FINESS_SYSTEM)
        else:  # practices have no FINESS: IDNST = 3 + SIRET
            number = self._siret()
            idnst, local = "3" + number, ("SIRET", SIRET_SYSTEM)
        identifiers = [_official_identifier("IDNST", IDNST_SYSTEM, idnst), _official_identifier(*local, number)]
        resource: Json = {
            "resourceType": "Organization",
            "identifier": identifiers,
            "active": True,
            "type": [concept(TRE_R02, sector, SECTORS[sector])],
            "name": name,
            "telecom": [{"system": "phone", "value": self._phone(), "use": "work"}],
            "address": [self._address(city)],
        }
        org = Org(full_url, kind, name, city, resource, f"identifier={IDNST_SYSTEM}|{idnst}")
        if kind in ("hopital", "clinique"):
            # The hospital's own patient-number namespace: a UUID-derived OID (arc 2.25).
            org.ipp_system = f"urn:oid:2.25.{self._uuid().int}"
        return org

    def _org_name(self, kind: str, city: City, owner: Person | None) -> str:
        c, pick = city.name, self.rng.choice
        owner_name = owner.family if owner else pick(FAMILY_NAMES)
        if kind == "hopital":
            return f"{'CHU' if city.chu else 'Centre hospitalier'} {city.of}"
        if kind == "clinique":
            return f"{pick(CLINICS)} - {c}"
        if kind == "laboratoire":
            return f"Laboratoire de biologie médicale {pick(('Bio', 'Biolab ', 'Labo '))}{c}"
        if kind == "pharmacie":
            return f"{pick(PHARMACIES)} - {c}"
        if kind == "imagerie":
            return f"Centre d'imagerie médicale {pick(('du Parc', 'des Arcades', 'Saint-Michel', 'de la Cité'))} - {c}"
        if kind == "cabinet_mg":
            return f"Cabinet médical du Dr {owner_name}"
        if kind == "msp":
            return f"Maison de santé pluriprofessionnelle {city.of}"
        if kind == "cabinet_dentaire":
            return f"Cabinet dentaire du Dr {owner_name}"
        return f"Cabinet infirmier {pick(('du Centre', 'des Remparts', 'de la Mairie', 'Soins à domicile'))} - {c}"

    def _staff(self, role: str, org: Org, person: Person | None = None) -> Staff:
        profession, specialty, _ = STAFF[role]
        person = person or self._person()
        rpps = self._rpps()
        return Staff(role, self._urn(), self._urn(), person, profession, specialty, org, rpps)

    def _practitioner_resource(self, s: Staff) -> Json:
        name: Json = {"use": "official", "family": s.person.family, "given": s.person.given}
        if s.profession != "60":
            name["prefix"] = ["Dr"]
        return {
            "resourceType": "Practitioner",
            "identifier": [
                {
                    "use": "official",
                    "type": concept(FR_V2_0203, "IDNPS"),
                    "system": IDNPS_SYSTEM,
                    "value": "8" + s.rpps,
                },
                {
                    "use": "official",
                    "type": concept(FR_V2_0203, "RPPS"),
                    "system": RPPS_SYSTEM,
                    "value": s.rpps,
                },
            ],
            "active": True,
            "name": [name],
            "telecom": [{"system": "phone", "value": self._phone(), "use": "work"}],
            "gender": s.person.gender,
        }

    def _role_resource(self, s: Staff) -> Json:
        res: Json = {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": ref(s.full_url, s.display),
            "organization": ref(s.org.full_url, s.org.name),
            "code": [concept(TRE_G15, s.profession, PROFESSIONS[s.profession])],
        }
        if s.specialty:
            res["specialty"] = [concept(TRE_R38, s.specialty, SPECIALTIES[s.specialty])]
        return res

    def _directory(self, hub: City) -> tuple[dict[str, Staff], list[Org]]:
        orgs: dict[str, Org] = {"hopital": self.hospitals[hub.insee]}
        for kind in ("clinique", "laboratoire", "pharmacie", "imagerie", "msp", "cabinet_infirmier"):
            orgs[kind] = self._organization(kind, hub)
        staff: dict[str, Staff] = {}
        gp = self._person()
        orgs["cabinet_mg"] = self._organization("cabinet_mg", hub, owner=gp)
        staff["gp"] = self._staff("gp", orgs["cabinet_mg"], gp)
        dentist = self._person()
        orgs["cabinet_dentaire"] = self._organization("cabinet_dentaire", hub, owner=dentist)
        staff["dentist"] = self._staff("dentist", orgs["cabinet_dentaire"], dentist)
        for role in (
            "gp2",
            "pharmacist",
            "nurse",
            "biologist",
            "radiologist",
            "cardiologist",
            "surgeon",
            "emergency",
        ):
            staff[role] = self._staff(role, orgs[STAFF[role][2]])
        return staff, list(orgs.values())

    # -- patients ---------------------------------------------------------------------------

    def _birth_place(self, forced: str | None, year: int) -> tuple[str, str, str]:
        """(NIR department, NIR commune, INSEE code of the place) for a birth in ``year``."""
        kind = (
            forced
            or self.rng.choices(("mainland", "corsica", "overseas", "abroad"), weights=(78, 6, 8, 8))[0]
        )
        if kind == "abroad":
            code, _country = self.rng.choice(COUNTRIES)
            return "99", code[2:], code
        if kind == "corsica":
            city = self.rng.choice(CORSICA)
        elif kind == "guadeloupe":
            city = self.rng.choice(GUADELOUPE)
        elif kind == "overseas":
            city = self.rng.choice(OVERSEAS)
        else:
            city = self.rng.choice(MAINLAND)
        insee = self.rng.choice(ARRONDISSEMENTS.get(city.insee, [city.insee]))
        dept, commune = insee[:2], insee[2:]
        if dept in ("2A", "2B") and year < 1976:
            dept = "20"  # Corsica was one department (20) before 1976; older NIRs keep it
        return dept, commune, insee

    def _birth_place_extension(self, insee: str) -> Json:
        address: Json = {"extension": [{"url": FR_INSEE_CODE, "valueCoding": coding(TRE_R13, insee)}]}
        if insee.startswith("99"):
            address["country"] = dict(COUNTRIES)[insee]
        else:
            city = CITY_BY_INSEE.get(insee) or ARRONDISSEMENT_CITY[insee]
            address["city"] = city.name
            address["postalCode"] = city.postal
            address["country"] = "France"
        return {"url": BIRTH_PLACE, "valueAddress": address}

    def _patient(self, hub: City, staff: dict[str, Staff]) -> PatientInfo:
        index = self._patient_index
        self._patient_index += 1
        # The first patients cover the special cases, so that even a small fixture has them.
        forced = {0: "corsica", 1: "corsica", 2: "guadeloupe", 3: "abroad"}.get(index)
        sex = (2, 1, 2, 1)[index] if index < 4 else self.rng.choice((1, 2))
        if forced:
            age = self.rng.randint(18, 48)  # born after 1976: Corsica as 2A/2B
        elif self.rng.random() < 0.15:
            age = self.rng.randint(0, 17)
        else:
            age = min(int(self.rng.triangular(18, 98, 45)), 97)
        year = REFERENCE_DATE.year - age - 1 + (1 if self.rng.random() < 0.5 else 0)
        birth = dt.date(year, 1, 1) + dt.timedelta(days=self.rng.randrange(365))
        if birth >= REFERENCE_DATE:
            birth = REFERENCE_DATE - dt.timedelta(days=self.rng.randint(30, 300))
        if index in (0, 1):  # one birth in Ajaccio (2A), one in Bastia (2B)
            insee = ("2A004", "2B033")[index]
            dept_code, commune = insee[:2], insee[2:]
        else:
            dept_code, commune, insee = self._birth_place(forced, birth.year)
        while True:
            rank = self.rng.randint(1, 999)
            nir = make_nir(sex, birth.year, birth.month, dept_code, commune, rank)
            if nir not in self._used_nirs:
                self._used_nirs.add(nir)
                break
        person = self._person(sex, n_given=self.rng.choices((1, 2, 3), weights=(40, 45, 15))[0])
        full_url = self._urn()
        hospital = self.hospitals[hub.insee]
        counter = self._ipp_counter.setdefault(hospital.full_url, self.rng.randrange(10**6, 9 * 10**6))
        self._ipp_counter[hospital.full_url] = counter + self.rng.randint(1, 40)
        official: Json = {
            "extension": [{"url": FR_BIRTH_LIST_GIVEN_NAME, "valueString": " ".join(person.given)}],
            "use": "official",
            "family": person.family,
            "given": person.given[:1],
        }
        names = [official]
        if person.sex == 2 and age >= 25 and self.rng.random() < 0.35:
            names.append({"use": "usual", "family": self.rng.choice(FAMILY_NAMES), "given": person.given[:1]})
        gp = staff["gp"] if self.rng.random() < 0.6 else staff["gp2"]
        queried = REFERENCE_DATE - dt.timedelta(days=self.rng.randint(30, 900))
        resource: Json = {
            "resourceType": "Patient",
            "extension": [
                {
                    "url": FR_IDENTITY_RELIABILITY,
                    "extension": [
                        {
                            "url": "identityStatus",
                            "valueCoding": coding(FR_IDENTITY_STATUS, "QUAL", "Identité qualifiée"),
                        },
                        {"url": "methodCollection", "valueCoding": coding(FR_METHOD_COLLECTION, "INSI")},
                        {"url": "dateInterrogationINSi", "valueDate": queried.isoformat()},
                        {
                            "url": "validationMode",
                            "valueCoding": coding(FR_VALIDATION_MODE, self.rng.choice(("CN", "PA"))),
                        },
                        {"url": "validationDate", "valueDate": queried.isoformat()},
                    ],
                },
                self._birth_place_extension(insee),
            ],
            "identifier": [
                {
                    "use": "official",
                    "type": concept(FR_V2_0203, self.ins_type),
                    "system": self.ins_system,
                    "value": nir,
                },
                {
                    "use": "usual",
                    "type": concept(V2_0203, "PI", "Patient internal identifier"),
                    "system": hospital.ipp_system,
                    "value": f"{counter:08d}",
                    "assigner": ref(hospital.full_url, hospital.name),
                },
            ],
            "active": True,
            "name": names,
            "telecom": [{"system": "phone", "value": self._phone(mobile=True), "use": "mobile"}],
            "gender": person.gender,
            "birthDate": birth.isoformat(),
            "address": [self._address(hub, use="home")],
            "generalPractitioner": [ref(gp.full_url, gp.display)],
            "managingOrganization": ref(hospital.full_url, hospital.name),
        }
        return PatientInfo(full_url, person, birth, nir, hub, resource)

    # -- documents --------------------------------------------------------------------------

    def _pick_kinds(self, patient: PatientInfo) -> list[DocKind]:
        kinds: list[DocKind] = []
        for _ in range(self.docs_per_patient):
            allowed = [
                k
                for k in DOC_KINDS
                if not (k.adult_only and patient.age < 18) and not (k.once and k in kinds)
            ]
            kinds.append(self.rng.choices(allowed, weights=[k.weight for k in allowed])[0])
        return kinds

    def _labels(self, patient: PatientInfo, kind: DocKind) -> list[Json]:
        labels = [concept(V3_CONFIDENTIALITY, "N", "normal")]
        draw = self.rng.random()
        if kind.authors == ("patient",):
            if draw < 0.3:
                labels.append(concept(TRE_A07, "MASQUE_PS", VISIBILITY["MASQUE_PS"]))
        elif draw < 0.07:
            labels.append(concept(TRE_A07, "MASQUE_PS", VISIBILITY["MASQUE_PS"]))
        elif draw < 0.10 and kind.key in ("biologie", "imagerie"):
            labels.append(concept(TRE_A07, "INVISIBLE_PATIENT", VISIBILITY["INVISIBLE_PATIENT"]))
        elif draw < 0.16 and patient.age < 18 and patient.age >= 12:
            labels.append(
                concept(
                    TRE_A07, "INVISIBLE_REPRESENTANTS_LEGAUX", VISIBILITY["INVISIBLE_REPRESENTANTS_LEGAUX"]
                )
            )
        return labels

    def _document(
        self, patient: PatientInfo, kind: DocKind, staff: dict[str, Staff]
    ) -> tuple[Json, Json, str, str]:
        """(DocumentReference, Binary, their fullUrls)."""
        author_role = self.rng.choice(kind.authors)
        if author_role == "dentist" and patient.age < 3:
            author_role = "gp"
        author = None if author_role == "patient" else staff[author_role]
        earliest = max(patient.birth_date + dt.timedelta(days=1), REFERENCE_DATE - dt.timedelta(days=730))
        span = max((REFERENCE_DATE - earliest).days, 1)
        day = earliest + dt.timedelta(days=self.rng.randrange(span))
        start = dt.datetime.combine(day, dt.time(self.rng.randint(8, 18), self.rng.choice((0, 15, 30, 45))))
        duration = dt.timedelta(minutes=self.rng.choice((15, 20, 30, 45)))
        if kind.key in ("lettre_sortie", "synthese_episode"):
            duration = dt.timedelta(days=self.rng.randint(2, 9))
        elif kind.key == "cr_operatoire":
            duration = dt.timedelta(minutes=self.rng.randint(45, 180))
        elif kind.key == "urgences":
            duration = dt.timedelta(hours=self.rng.randint(2, 9))
        end = start + duration
        created = end + dt.timedelta(minutes=self.rng.randint(5, 240))
        if created.date() >= REFERENCE_DATE:
            created = dt.datetime.combine(REFERENCE_DATE - dt.timedelta(days=1), dt.time(20, 0))
            end = min(end, created)
            start = min(start, end)
        city = author.org.city if author else patient.city
        letter = self._letter(patient, kind, author, start, end, created)
        text = self.rng.random() < kind.text_ratio
        content_type = "text/plain; charset=utf-8" if text else "application/pdf"
        if text:
            data = render_text(letter)
        else:
            data = render_pdf(letter, created, self.pdf_bytes, self.rng.getrandbits(32))
        doc_url, bin_url = self._urn(), self._urn()
        format_code, format_display = FORMATS[content_type]
        description = f"{kind.type_display} du {created:%d/%m/%Y}"
        if author:
            facility = concept(TRE_R02, ORG_KINDS[author.org.kind][0], SECTORS[ORG_KINDS[author.org.kind][0]])
            setting_code = ORG_KINDS[author.org.kind][1]
            setting = concept(TRE_A01, setting_code, SETTINGS[setting_code])
            authors = [ref(author.full_url, author.display)]
        else:
            facility = concept(TRE_A00, "EXP_PATIENT", "Expression personnelle du patient")
            setting = concept(TRE_A00, "EXP_PATIENT", "Expression personnelle du patient")
            authors = [ref(patient.full_url)]
        docref: Json = {
            "resourceType": "DocumentReference",
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:2.25.{self._uuid().int}"},
            "status": "current",
            "type": concept(kind.type_system, kind.type_code, kind.type_display),
            "category": [concept(TRE_A03, kind.class_code, CLASSES[kind.class_code])],
            "subject": ref(patient.full_url),
            "date": fhir_instant(created, city),
            "author": authors,
            "description": description,
            "securityLabel": self._labels(patient, kind),
            "content": [
                {
                    "attachment": {
                        "contentType": content_type,
                        "language": "fr-FR",
                        "url": bin_url,
                        "size": len(data),
                        "hash": sha1_b64(data),
                        "title": letter.title,
                        "creation": fhir_instant(created, city),
                    },
                    "format": coding(TRE_A11, format_code, format_display),
                }
            ],
            "context": {
                "period": {"start": fhir_instant(start, city), "end": fhir_instant(end, city)},
                "facilityType": facility,
                "practiceSetting": setting,
                "sourcePatientInfo": ref(patient.full_url),
            },
        }
        if author:
            docref["custodian"] = ref(author.org.full_url, author.org.name)
        binary: Json = {
            "resourceType": "Binary",
            "contentType": content_type,
            "securityContext": ref(doc_url),
            "data": base64.b64encode(data).decode("ascii"),
        }
        return docref, binary, doc_url, bin_url

    def _letter(
        self,
        patient: PatientInfo,
        kind: DocKind,
        author: Staff | None,
        start: dt.datetime,
        end: dt.datetime,
        created: dt.datetime,
    ) -> Letter:
        p = patient
        who = f"{p.civility + ' ' if p.civility else ''}{' '.join(p.person.given[:1])} {p.person.family.upper()}"
        born = "né" if p.person.sex == 1 else "née"
        nir = p.nir
        patient_line = (
            f"Patient : {who}, {born} le {p.birth_date:%d/%m/%Y} - INS : "
            f"{nir[0]} {nir[1:3]} {nir[3:5]} {nir[5:7]} {nir[7:10]} {nir[10:13]} {nir[13:]}"
        )
        if author:
            org = author.org
            addr = org.resource["address"][0]
            sender = [
                org.name,
                f"{addr['line'][0]}, {addr['postalCode']} {addr['city']}",
                f"Tél. {org.resource['telecom'][0]['value']}",
                f"{author.display} - RPPS {author.rpps}",
            ]
            place_date = f"Fait à {org.city.name}, le {date_fr(created.date())}"
            signature = author.display
        else:
            sender = [
                f"{' '.join(p.person.given)} {p.person.family}",
                p.resource["address"][0]["line"][0] + f", {p.city.postal} {p.city.name}",
            ]
            place_date = f"Fait à {p.city.name}, le {date_fr(created.date())}"
            signature = f"{' '.join(p.person.given[:1])} {p.person.family}"
        sections: list[tuple[str, str]] = []
        table: list[tuple[str, str, str, str]] = []
        rng = self.rng
        title = kind.type_display
        on = f"le {date_fr(start.date())}"
        if kind.key == "consultation":
            reason, conclusion = rng.choice(
                CONSULT_REASONS[-1:] if author and author.role == "dentist" else CONSULT_REASONS[:-1]
            )
            ta = f"{rng.randint(110, 150)}/{rng.randint(65, 95)} mmHg"
            weight = (
                rng.randint(45, 105) if p.age >= 16 else round(3.5 + 3.1 * p.age + rng.uniform(-1.5, 2.5))
            )
            sections = [
                ("Motif", f"{reason}, consultation du {start:%d/%m/%Y} à {start:%H:%M}."),
                (
                    "Examen clinique",
                    (
                        f"Pression artérielle {ta}, fréquence cardiaque {rng.randint(55, 95)}/min, "
                        f"température {rng.choice(('36,8', '37,0', '37,2', '37,6'))} °C, "
                        f"poids {weight} kg."
                    ),
                ),
                ("Conclusion", conclusion),
                (
                    "",
                    "Je reste à votre disposition pour tout renseignement complémentaire. Bien confraternellement.",
                ),
            ]
        elif kind.key == "biologie":
            sample = rng.sample(LAB_TESTS, rng.randint(5, 9))
            for name, unit, lo, hi in sample:
                value = rng.uniform(lo * 0.85, hi * 1.15)
                table.append(
                    (name, f"{value:.2f}".replace(".", ","), unit, f"{lo:g} - {hi:g}".replace(".", ","))
                )
            sections = [
                ("Prélèvement", f"Prélèvement veineux réalisé {on} à {start:%H:%M}, à jeun."),
                (
                    "Commentaire",
                    "Résultats validés par le biologiste. Les valeurs hors normes sont à interpréter selon le contexte clinique.",
                ),
            ]
        elif kind.key == "imagerie":
            exam, result = rng.choice(IMAGING)
            title = f"Compte rendu d'imagerie : {exam}"
            sections = [
                (
                    "Indication",
                    rng.choice(("Bilan de douleur", "Contrôle", "Dépistage organisé", "Traumatisme récent")),
                ),
                ("Technique", f"{exam} réalisée {on}."),
                ("Résultats", result),
                ("Conclusion", result.split(".")[0] + "."),
            ]
        elif kind.key == "ordonnance":
            meds = rng.sample(MEDICATIONS, rng.randint(1, 3))
            title = "Ordonnance"
            sections = [(name, posology) for name, posology in meds]
            sections.append(("", "Ordonnance à renouveler une fois si besoin."))
        elif kind.key == "vsm":
            title = "Volet de synthèse médicale"
            sections = [
                (
                    "Antécédents",
                    rng.choice(
                        (
                            "Appendicectomie dans l'enfance.",
                            "Hypertension artérielle depuis 2015.",
                            "Diabète de type 2.",
                            "Pas d'antécédent notable.",
                        )
                    ),
                ),
                (
                    "Allergies",
                    rng.choice(
                        (
                            "Aucune allergie connue.",
                            "Allergie à la pénicilline (urticaire).",
                            "Allergie aux pollens de graminées.",
                        )
                    ),
                ),
                ("Traitements en cours", "; ".join(m[0] for m in rng.sample(MEDICATIONS, 2)) + "."),
                ("Vaccinations", "Calendrier vaccinal à jour."),
                (
                    "Points de vigilance",
                    rng.choice(("Surveillance tensionnelle.", "Suivi podologique annuel.", "Aucun.")),
                ),
            ]
        elif kind.key in ("synthese_episode", "lettre_sortie"):
            disease, treatment = (
                rng.choice(CARDIO_EPISODES)
                if (author and author.role == "cardiologist")
                else rng.choice([(o[0].lower(), o[1]) for o in OPERATIONS])
            )
            sections = [
                (
                    "Hospitalisation",
                    (
                        f"Du {start:%d/%m/%Y} au {end:%d/%m/%Y}, service de "
                        f"{'cardiologie' if author and author.role == 'cardiologist' else 'chirurgie orthopédique'}."
                    ),
                ),
                ("Motif et diagnostic", f"Prise en charge pour {disease}."),
                ("Traitement", treatment),
                ("Traitement de sortie", "; ".join(m[0] for m in rng.sample(MEDICATIONS, 2)) + "."),
                (
                    "Suivi",
                    f"Consultation de contrôle dans {rng.choice(('un mois', 'six semaines', 'trois mois'))}. Médecin traitant informé.",
                ),
            ]
        elif kind.key == "cr_operatoire":
            op, detail = rng.choice(OPERATIONS)
            title = f"Compte rendu opératoire : {op}"
            sections = [
                ("Intervention", f"{op}, {on}, de {start:%H:%M} à {end:%H:%M}."),
                (
                    "Anesthésie",
                    rng.choice(("Anesthésie générale.", "Rachianesthésie.", "Anesthésie locorégionale.")),
                ),
                ("Déroulement", detail),
                ("Suites", "Surveillance habituelle, lever précoce, antalgiques de palier 1."),
            ]
        elif kind.key == "urgences":
            reason, outcome = rng.choice(EMERGENCIES)
            sections = [
                ("Motif de recours", f"{reason}, arrivée {on} à {start:%H:%M}."),
                ("Prise en charge", outcome),
                ("Orientation", f"Sortie à {end:%H:%M}, retour à domicile."),
            ]
        elif kind.key == "vaccination":
            disease, product = rng.choice(VACCINES)
            sections = [
                ("Vaccin", f"{product} - vaccination contre : {disease}."),
                (
                    "Administration",
                    (
                        f"Injection intramusculaire dans le deltoïde {rng.choice(('gauche', 'droit'))}, {on}. "
                        f"Lot {rng.choice('ABCDEFGHJK')}{rng.randint(1000, 9999)}{rng.choice('XYZ')}."
                    ),
                ),
                ("", "Aucune réaction immédiate observée après 15 minutes de surveillance."),
            ]
        elif kind.key == "dispensation":
            meds = rng.sample(MEDICATIONS, rng.randint(1, 3))
            sections = [
                (f"Délivré : {name}", f"{rng.randint(1, 3)} boîte(s). {posology}.") for name, posology in meds
            ]
            sections.append(("", f"Dispensation {on} sur présentation d'une ordonnance."))
        elif kind.key == "directives":
            title = "Mes directives anticipées"
            sections = [
                (
                    "",
                    "Je rédige ces directives anticipées en pleine possession de mes facultés, pour le cas où je ne serais plus en mesure d'exprimer ma volonté.",
                ),
                (
                    "Traitements",
                    rng.choice(
                        (
                            "Je refuse tout acharnement thérapeutique : pas de réanimation cardio-respiratoire, ni de ventilation mécanique prolongée sans espoir raisonnable d'amélioration.",
                            "Je souhaite que tous les traitements utiles soient mis en œuvre tant qu'une amélioration de mon état reste possible.",
                        )
                    ),
                ),
                (
                    "Soulagement",
                    "Je demande que mes douleurs soient soulagées, même si cela doit abréger ma vie, et je souhaite une sédation profonde et continue en fin de vie.",
                ),
                (
                    "Personne de confiance",
                    f"{rng.choice(MALE_GIVEN + FEMALE_GIVEN)} {rng.choice(FAMILY_NAMES)}, joignable au {self._phone(mobile=True)}.",
                ),
            ]
        return Letter(sender, title, patient_line, sections, table, place_date, signature)

    # -- bundles ----------------------------------------------------------------------------

    def _entry(self, full_url: str, resource: Json, if_none_exist: str | None = None) -> Json:
        request: Json = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist and self.conditional:
            request["ifNoneExist"] = if_none_exist
        return {"fullUrl": full_url, "resource": resource, "request": request}

    def shared_bundle(self) -> Json | None:
        """The organisations that several bundles refer to (hospitals of the hub cities)."""
        if not self.hospitals:
            return None
        entries = [self._entry(o.full_url, o.resource, o.if_none_exist) for o in self.hospitals.values()]
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    def patient_bundle(self, index: int, n_patients: int) -> Json:
        hub = self.hubs[index % len(self.hubs)]
        staff, orgs = self._directory(hub)
        entries = [self._entry(o.full_url, o.resource, o.if_none_exist) for o in orgs]
        for s in staff.values():
            entries.append(self._entry(s.full_url, self._practitioner_resource(s)))
        for s in staff.values():
            entries.append(self._entry(s.role_full_url, self._role_resource(s)))
        docs: list[Json] = []
        for _ in range(n_patients):
            patient = self._patient(hub, staff)
            entries.append(self._entry(patient.full_url, patient.resource))
            for kind in self._pick_kinds(patient):
                docref, binary, doc_url, bin_url = self._document(patient, kind, staff)
                docs.append(self._entry(bin_url, binary))
                docs.append(self._entry(doc_url, docref))
        entries.extend(docs)
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    def __iter__(self) -> Iterator[Json]:
        shared = self.shared_bundle()
        if shared is not None:
            yield shared
        remaining = self.n_patients
        for index in range(self.n_patient_bundles):
            count = min(self.patients_per_bundle, remaining)
            remaining -= count
            yield self.patient_bundle(index, count)


def iter_bundles(
    n_patients: int,
    seed: int = 42,
    docs_per_patient: int = 3,
    *,
    patients_per_bundle: int = 20,
    pdf_kb: int = 0,
    ins_system: str = "nir",
    conditional: bool = True,
) -> Iterator[Json]:
    """Yield the transaction bundles one at a time (constant memory for large data sets).

    The first bundle holds the shared organisations; each following one about
    ``patients_per_bundle`` patients, ``docs_per_patient`` documents each, and the directory they
    refer to. ``pdf_kb`` pads each PDF to at least that many kB (0: a few kB, unpadded).
    ``ins_system`` is ``nir`` (``urn:oid:1.2.250.1.213.1.4.8``), ``test`` (``.10``) or
    ``demo`` (``.11``). ``conditional`` adds ``ifNoneExist`` to the organisations' entries.
    """
    yield from Generator(
        n_patients,
        seed,
        docs_per_patient,
        patients_per_bundle=patients_per_bundle,
        pdf_kb=pdf_kb,
        ins_system=ins_system,
        conditional=conditional,
    )


def generate(n_patients: int, seed: int = 42, docs_per_patient: int = 3, **options: Any) -> list[Json]:
    """All the bundles as a list (see :func:`iter_bundles` for the options)."""
    return list(iter_bundles(n_patients, seed, docs_per_patient, **options))


# --------------------------------------------------------------------------------------------
# Loading into a server
# --------------------------------------------------------------------------------------------


class BundleRejected(Exception):
    """The server refused a bundle; ``outcome`` is its OperationOutcome (or the raw body)."""

    def __init__(self, index: int, status: int, outcome: Any) -> None:
        self.index, self.status, self.outcome = index, status, outcome
        super().__init__(f"bundle {index} rejected with HTTP {status}")


@dataclass
class LoadStats:
    bundles: int = 0
    resources: int = 0
    bytes_sent: int = 0
    seconds: float = 0.0

    @property
    def resources_per_second(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def _post(client: Any, url: str, index: int, body: bytes) -> None:
    response = client.post(url, content=body)
    if response.status_code >= 400:
        try:
            outcome: Any = response.json()
        except ValueError:
            outcome = response.text
        raise BundleRejected(index, response.status_code, outcome)


def load(
    bundles: Iterable[Json],
    base_url: str,
    *,
    token: str | None = None,
    concurrency: int = 1,
    timeout: float = 300.0,
    progress: bool = True,
    total: int | None = None,
) -> LoadStats:
    """POST each transaction bundle to ``base_url`` (``application/fhir+json``), with httpx.

    The first bundle (shared organisations, conditional creates) is posted alone before the
    others, which then go ``concurrency`` at a time. Raises :class:`BundleRejected` at the first
    refusal (after waiting for the bundles in flight).
    """
    import httpx
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    url = base_url.rstrip("/")
    stats = LoadStats()
    limits = httpx.Limits(max_connections=max(concurrency, 1), max_keepalive_connections=max(concurrency, 1))
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[resources]} resources"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    started = time.perf_counter()
    with (
        httpx.Client(headers=headers, timeout=timeout, limits=limits) as client,
        Progress(*columns, disable=not progress, transient=False) as bar,
        ThreadPoolExecutor(max_workers=max(concurrency, 1)) as pool,
    ):
        task = bar.add_task("Loading bundles", total=total, resources=0)
        pending: dict[Future[None], int] = {}
        failure: BundleRejected | None = None

        def settle(done: Iterable[Future[None]]) -> None:
            nonlocal failure
            for fut in done:
                n = pending.pop(fut)
                try:
                    fut.result()
                except BundleRejected as exc:
                    failure = failure or exc
                    continue
                stats.bundles += 1
                stats.resources += n
                bar.update(task, advance=1, resources=stats.resources)

        for index, bundle in enumerate(bundles):
            body = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            stats.bytes_sent += len(body)
            fut = pool.submit(_post, client, url, index, body)
            pending[fut] = len(bundle.get("entry", []))
            if index == 0 or len(pending) >= max(concurrency, 1):
                # The first bundle alone (shared organisations), then keep `concurrency` in flight.
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED if index else ALL_COMPLETED)
                settle(done)
            if failure:
                break
        settle(wait(list(pending)).done)
    stats.seconds = time.perf_counter() - started
    if failure:
        raise failure
    return stats


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Generate realistic French DMP demo data (FHIR R4 transaction bundles) and load it.",
    )
    p.add_argument("--patients", type=int, required=True, help="number of patients")
    p.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")
    p.add_argument("--docs-per-patient", type=int, default=3, help="documents per patient (default 3)")
    p.add_argument(
        "--patients-per-bundle", type=int, default=20, help="patients per transaction (default 20)"
    )
    p.add_argument(
        "--pdf-kb", type=int, default=0, help="pad every PDF to at least this many kB (benchmarks)"
    )
    p.add_argument(
        "--ins-system",
        choices=sorted(INS_SYSTEMS),
        default="nir",
        help="INS OID: nir = 1.2.250.1.213.1.4.8 (default), test = .10, demo = .11",
    )
    p.add_argument("--no-conditional", action="store_true", help="no ifNoneExist on the organisations")
    p.add_argument("--out", type=Path, help="write bundle-NNNN.json files into this directory")
    p.add_argument("--pretty", action="store_true", help="indent the JSON files")
    p.add_argument("--load", metavar="BASE_URL", help="POST every bundle to this FHIR base URL")
    p.add_argument("--token", help="bearer token for --load")
    p.add_argument("--concurrency", type=int, default=1, help="bundles posted in parallel (default 1)")
    p.add_argument("--timeout", type=float, default=300.0, help="HTTP timeout per bundle, seconds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _write(bundles: Iterable[Json], out: Path, pretty: bool) -> Iterator[Json]:
    out.mkdir(parents=True, exist_ok=True)
    for index, bundle in enumerate(bundles):
        text = json.dumps(bundle, ensure_ascii=False, indent=2 if pretty else None)
        (out / f"bundle-{index:04d}.json").write_text(text + "\n", encoding="utf-8")
        yield bundle


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.out and not args.load:
        _parser().error("give --out DIR and/or --load BASE_URL")
    if args.patients < 0 or args.concurrency < 1:
        _parser().error("--patients must be >= 0 and --concurrency >= 1")
    from rich.console import Console

    console = Console(stderr=True)
    gen = Generator(
        args.patients,
        args.seed,
        args.docs_per_patient,
        patients_per_bundle=args.patients_per_bundle,
        pdf_kb=args.pdf_kb,
        ins_system=args.ins_system,
        conditional=not args.no_conditional,
    )
    total = gen.n_patient_bundles + (1 if gen.hospitals else 0)
    stream: Iterable[Json] = iter(gen)
    counted = {"bundles": 0, "resources": 0}

    def count(items: Iterable[Json]) -> Iterator[Json]:
        for b in items:
            counted["bundles"] += 1
            counted["resources"] += len(b.get("entry", []))
            yield b

    stream = count(stream)
    if args.out:
        stream = _write(stream, args.out, args.pretty)
    started = time.perf_counter()
    if args.load:
        import httpx

        try:
            stats = load(
                stream,
                args.load,
                token=args.token,
                concurrency=args.concurrency,
                timeout=args.timeout,
                progress=not args.no_progress,
                total=total,
            )
        except BundleRejected as exc:
            console.print(
                f"[bold red]Bundle {exc.index} was rejected (HTTP {exc.status}).[/] OperationOutcome:"
            )
            body = (
                exc.outcome
                if isinstance(exc.outcome, str)
                else json.dumps(exc.outcome, ensure_ascii=False, indent=2)
            )
            console.print(body, markup=False, highlight=False)
            return 1
        except (httpx.HTTPError, OSError) as exc:  # connection refused, timeout...
            console.print(f"[bold red]Loading failed:[/] {type(exc).__name__}: {exc}")
            return 1
        console.print(
            f"Loaded {stats.bundles} bundles, {stats.resources} resources "
            f"({stats.bytes_sent / 1e6:.1f} MB) in {stats.seconds:.1f} s: "
            f"[bold]{stats.resources_per_second:.0f} resources/s[/]"
        )
    else:
        for _ in stream:
            pass
    if args.out:
        console.print(
            f"Wrote {counted['bundles']} bundles ({counted['resources']} resources) to {args.out} "
            f"in {time.perf_counter() - started:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
