"""Minimal HTML pages (login, index). Russian first; English with ?lang=en. No candidate names here."""

from __future__ import annotations

from html import escape

TEXT = {
    "ru": {
        "title": "ОСКЭ — сервер просмотра",
        "login": "Вход",
        "user": "Имя пользователя",
        "password": "Пароль",
        "submit": "Войти",
        "logout": "Выйти",
        "bad": "Неверное имя пользователя или пароль",
        "throttled": "Слишком много неудачных попыток. Повторите позже.",
        "welcome": "Вы вошли как",
        "admin": "Администрирование",
        "role.admin": "администратор",
        "role.examiner": "член комиссии",
        "role.observer": "наблюдатель",
        "role.archivist": "архивариус",
        "links": [
            ("/api/users", "Пользователи"),
            ("/api/stations", "Станции"),
            ("/api/exam-days", "Дни экзамена"),
            ("/api/specialties", "Специальности"),
            ("/api/tasks", "Задания"),
            ("/api/candidates", "Аккредитуемые"),
            ("/api/audit/verify", "Проверка журнала аудита"),
        ],
        "other": "English",
    },
    "en": {
        "title": "OSCE review server",
        "login": "Sign in",
        "user": "User name",
        "password": "Password",
        "submit": "Sign in",
        "logout": "Sign out",
        "bad": "Wrong user name or password",
        "throttled": "Too many failed attempts. Try again later.",
        "welcome": "Signed in as",
        "admin": "Administration",
        "role.admin": "administrator",
        "role.examiner": "examiner",
        "role.observer": "observer",
        "role.archivist": "archivist",
        "links": [
            ("/api/users", "Users"),
            ("/api/stations", "Stations"),
            ("/api/exam-days", "Exam days"),
            ("/api/specialties", "Specialties"),
            ("/api/tasks", "Tasks"),
            ("/api/candidates", "Candidates"),
            ("/api/audit/verify", "Verify the audit log"),
        ],
        "other": "Русский",
    },
}


def lang_of(query_lang: str | None) -> str:
    return "en" if query_lang == "en" else "ru"


def _page(lang: str, title: str, body: str, csrf: str = "") -> str:
    other = "ru" if lang == "en" else "en"
    meta = f'<meta name="csrf-token" content="{escape(csrf)}">' if csrf else ""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">{meta}'
        f"<title>{escape(title)}</title></head><body>"
        f'<p><a href="?lang={other}">{TEXT[lang]["other"]}</a></p>'
        f"{body}</body></html>"
    )


def login_page(lang: str, csrf: str, error: str | None = None) -> str:
    t = TEXT[lang]
    err = f'<p role="alert">{escape(t[error])}</p>' if error else ""
    body = (
        f"<h1>{escape(t['title'])}</h1><h2>{escape(t['login'])}</h2>{err}"
        f'<form method="post" action="/login?lang={lang}">'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<p><label>{escape(t["user"])} <input name="login" autocomplete="username" required></label></p>'
        f'<p><label>{escape(t["password"])} <input name="password" type="password" '
        f'autocomplete="current-password" required></label></p>'
        f'<p><button type="submit">{escape(t["submit"])}</button></p></form>'
    )
    return _page(lang, t["login"], body)


def index_page(lang: str, login: str, role: str, csrf: str) -> str:
    t = TEXT[lang]
    links = ""
    if role == "admin":
        items = "".join(f'<li><a href="{href}">{escape(label)}</a></li>' for href, label in t["links"])
        links = f"<h2>{escape(t['admin'])}</h2><ul>{items}</ul>"
    if role == "archivist":  # the archive search page (routes/archive_page.py)
        links = f'<p><a href="/archive?lang={lang}">{"Archive" if lang == "en" else "Архив попыток"}</a></p>'
    body = (
        f"<h1>{escape(t['title'])}</h1>"
        f"<p>{escape(t['welcome'])} <b>{escape(login)}</b> ({escape(t['role.' + role])})</p>{links}"
        f'<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{escape(csrf)}">'
        f'<button type="submit">{escape(t["logout"])}</button></form>'
    )
    return _page(lang, t["title"], body, csrf)
