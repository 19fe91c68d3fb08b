"""French and English texts of the login, consent and management pages."""

from __future__ import annotations

TEXTS = {
    "fr": {
        "title": "DMP — Connexion",
        "service": "Dossier Médical Partagé",
        "login_heading": "Connexion",
        "login_intro": "Patients : votre INS (15 chiffres) ou votre e-mail. Professionnels : votre numéro RPPS "
        "(il remplace ici la carte CPS / e-CPS). Représentants légaux : votre e-mail.",
        "login_for": "L'application « {name} » demande l'accès à des données du DMP.",
        "login_label": "Identifiant (INS, e-mail ou RPPS)",
        "password_label": "Mot de passe",
        "submit_login": "Se connecter",
        "bad_credentials": "Identifiant ou mot de passe incorrect.",
        "too_many": "Trop de tentatives. Réessayez dans quelques minutes.",
        "csrf": "Le formulaire a expiré. Rechargez la page et recommencez.",
        "expired_request": "Cette demande d'autorisation est inconnue ou a expiré. Relancez l'application.",
        "otp_heading": "Code de vérification",
        "otp_intro_totp": "Saisissez le code à 6 chiffres de votre application d'authentification.",
        "otp_intro_log": "Saisissez le code à 6 chiffres qui vous a été envoyé.",
        "otp_label": "Code",
        "bad_code": "Code incorrect.",
        "submit_otp": "Valider",
        "picker_heading": "Choisir le patient",
        "picker_intro": "L'application « {name} » travaille sur le dossier d'un patient. Lequel ?",
        "picker_search": "Nom ou INS",
        "picker_submit_search": "Rechercher",
        "picker_none": "Aucun patient trouvé.",
        "picker_choose": "Choisir",
        "born": "né(e) le",
        "consent_heading": "Autoriser l'application",
        "consent_intro": "L'application « {name} » demande à :",
        "consent_hint": "Décochez ce que vous ne souhaitez pas accorder.",
        "consent_patient": "Dossier concerné :",
        "consent_as": "Vous êtes connecté(e) en tant que",
        "purpose_label": "Motif d'accès",
        "purpose_TREAT": "Prise en charge habituelle",
        "purpose_ETREAT": "Urgence (régulation)",
        "purpose_BTG": "Bris de glace (accès exceptionnel, tracé et signalé au patient)",
        "btg_reason_label": "Justification du bris de glace",
        "btg_reason_required": "Le bris de glace exige une justification.",
        "approve": "Autoriser",
        "deny": "Refuser",
        "not_allowed": "Ce choix n'est pas permis.",
        "manage_heading": "Applications autorisées",
        "manage_none": "Aucune application n'a d'accès en cours.",
        "revoke": "Retirer l'accès",
        "logout": "Se déconnecter",
        "since": "depuis le",
        "error_heading": "Erreur",
        "switch": "English",
        "switch_lang": "en",
    },
    "en": {
        "title": "DMP — Sign in",
        "service": "Shared Medical Record (DMP)",
        "login_heading": "Sign in",
        "login_intro": "Patients: your INS (15 digits) or e-mail. Professionals: your RPPS number (standing in "
        "for the CPS / e-CPS card). Legal representatives: your e-mail.",
        "login_for": "The app “{name}” asks for access to DMP data.",
        "login_label": "Login (INS, e-mail or RPPS)",
        "password_label": "Password",
        "submit_login": "Sign in",
        "bad_credentials": "Wrong login or password.",
        "too_many": "Too many attempts. Try again in a few minutes.",
        "csrf": "The form has expired. Reload the page and try again.",
        "expired_request": "This authorization request is unknown or has expired. Start the app again.",
        "otp_heading": "Verification code",
        "otp_intro_totp": "Enter the 6-digit code from your authenticator app.",
        "otp_intro_log": "Enter the 6-digit code you were sent.",
        "otp_label": "Code",
        "bad_code": "Wrong code.",
        "submit_otp": "Verify",
        "picker_heading": "Choose the patient",
        "picker_intro": "The app “{name}” works on one patient's record. Which one?",
        "picker_search": "Name or INS",
        "picker_submit_search": "Search",
        "picker_none": "No patient found.",
        "picker_choose": "Choose",
        "born": "born",
        "consent_heading": "Authorize the app",
        "consent_intro": "The app “{name}” asks to:",
        "consent_hint": "Untick anything you do not want to grant.",
        "consent_patient": "Record:",
        "consent_as": "You are signed in as",
        "purpose_label": "Purpose of access",
        "purpose_TREAT": "Usual care",
        "purpose_ETREAT": "Emergency (dispatch)",
        "purpose_BTG": "Break the glass (exceptional access, logged and reported to the patient)",
        "btg_reason_label": "Reason for breaking the glass",
        "btg_reason_required": "Breaking the glass needs a reason.",
        "approve": "Allow",
        "deny": "Deny",
        "not_allowed": "This choice is not allowed.",
        "manage_heading": "Authorized apps",
        "manage_none": "No app has access right now.",
        "revoke": "Revoke access",
        "logout": "Sign out",
        "since": "since",
        "error_heading": "Error",
        "switch": "Français",
        "switch_lang": "fr",
    },
}


def texts(lang: str) -> dict:
    return TEXTS.get(lang, TEXTS["fr"])


def pick_language(explicit: str | None, remembered: str | None, accept_language: str) -> str:
    for candidate in (explicit, remembered):
        if candidate in TEXTS:
            return candidate
    best, best_q = "fr", -1.0
    for part in (accept_language or "").split(","):
        piece = part.strip().split(";")
        tag = piece[0].strip().lower()[:2]
        q = 1.0
        for param in piece[1:]:
            if param.strip().startswith("q="):
                try:
                    q = float(param.strip()[2:])
                except ValueError:
                    q = 0.0
        if tag in TEXTS and q > best_q:
            best, best_q = tag, q
    return best
