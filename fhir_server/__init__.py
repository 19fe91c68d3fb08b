"""FHIR R4 server for the French Dossier Médical Partagé (DMP)."""

__version__ = "0.1.0"
SOFTWARE_NAME = "dmp-fhir"
