"""Every text the agent's pages show, in Russian (first) and English: one catalogue, read by the templates
(`t.key`) and by the pages' scripts (the `data-texts` attribute of the page's root, `tr("key", {name: value})`).
`{name}` marks a value the script fills in. The cue texts are also what the attempt's log records (in Russian).
"""

from __future__ import annotations

LANGS = ("ru", "en")

TEXTS: dict[str, tuple[str, str]] = {
    # the tablet's marking page
    "marking_title": ("Оценочный лист", "Assessment checklist"),
    "other_language": ("English", "Русский"),
    "login_heading": ("Вход члена аккредитационной комиссии", "Sign in: accreditation commission member"),
    "login_name": ("Логин", "Login"),
    "login_pin": ("PIN", "PIN"),
    "login_submit": ("Войти", "Sign in"),
    "candidate_label": ("Номер аккредитуемого", "Candidate's accreditation number"),
    "station_label": ("Станция", "Station"),
    "examiner_label": ("Член комиссии", "Commission member"),
    "phase_waiting": ("Ожидание начала", "Waiting to start"),
    "phase_reading": ("Ознакомление с заданием", "Reading the task"),
    "phase_performing": ("Выполнение", "Performing"),
    "phase_over": ("Время вышло", "Time is up"),
    "start_timer": ("Начать отсчёт", "Start the timer"),
    "signed_note": ("Лист подписан. Исправления — только с указанием причины.",
                    "The sheet is signed. A correction needs a reason."),
    "rating_heading": ("Общая оценка", "Overall rating"),
    "finalise": ("Завершить и подписать", "Finish and sign"),
    "history_heading": ("История отметок", "History of marks"),
    "reason_placeholder": ("Причина исправления", "Reason for the correction"),
    "confirm": ("Подтвердить", "Confirm"),
    "cancel": ("Отмена", "Cancel"),
    "error_status": ("ошибка {status}", "error {status}"),
    "no_connection": ("Нет связи с агентом: {message}", "No connection to the agent: {message}"),
    "yes": ("Да", "Yes"),
    "no": ("Нет", "No"),
    "mark_label": ("Пункт {n}: {what}", "Item {n}: {what}"),
    "done": ("выполнено", "done"),
    "not_done": ("не выполнено", "not done"),
    "critical": ("Критический пункт", "Critical item"),
    "presentation_do": ("Выполнить", "Do"),
    "presentation_say": ("Сказать", "Say"),
    "presentation_do_say": ("Выполнить/Сказать", "Do/Say"),
    "borderline": (" (пограничный)", " (borderline)"),
    "passed": ("сдано", "passed"),
    "failed": ("не сдано", "not passed"),
    "score_line": ("Выполнено {done} из {total} — {percent} % — {verdict} (порог {threshold} %)",
                   "Done {done} of {total} — {percent} % — {verdict} (pass mark {threshold} %)"),
    "history_recording": (" [запись {clock}]", " [recording {clock}]"),
    "history_mark": ("пункт {item}: {answer}", "item {item}: {answer}"),
    "answer_yes": ("да", "yes"),
    "answer_no": ("нет", "no"),
    "history_rating": ("общая оценка {rating}", "overall rating {rating}"),
    "history_finalise": ("подписано", "signed"),
    "history_reopen": ("лист открыт для исправлений", "sheet reopened for corrections"),
    "history_reason": (" (причина: {reason})", " (reason: {reason})"),
    "correction_title": ("Исправление подписанного листа", "Correcting a signed sheet"),
    "correction_text": ("Изменить: {what}. Укажите причину.", "Change: {what}. Give the reason."),
    "what_item": ("пункт {n}", "item {n}"),
    "what_rating": ("общая оценка", "overall rating"),
    "saving": ("Сохранение…", "Saving…"),
    "saved": ("Сохранено", "Saved"),
    "not_saved": ("Не сохранено: {message}", "Not saved: {message}"),
    "offline_not_saved": ("Нет связи с агентом: отметка не сохранена, повторите",
                          "No connection to the agent: the mark is not saved, try again"),
    "reason_required": ("Причина обязательна", "A reason is required"),
    "finalise_title": ("Подписать оценочный лист?", "Sign the checklist?"),
    "finalise_text": ("Результат: {done} из {total}.{note} После подписи изменения — только с указанием причины.",
                      "Result: {done} of {total}.{note} After signing, a change needs a reason."),
    "unmarked_note": (" Не отмечено пунктов: {n} (считаются невыполненными).",
                      " Items not marked: {n} (counted as not done)."),
    "locale": ("ru-RU", "en-GB"),
    "cpr_pending": ("Показатели СЛР по видео: идёт анализ записи…", "CPR figures from the video: being analysed…"),
    # the room's clock page
    "clock_title": ("Станция: время", "Station: time"),
    "clock_idle": ("Нет попытки", "No attempt"),
    "clock_scheduled": ("Ожидание", "Waiting"),
    "clock_reading": ("Ознакомление", "Reading"),
    "clock_performing": ("Выполнение", "Performing"),
    "clock_done": ("Время вышло", "Time is up"),
    # the cues (spoken in the room, shown on the clock page)
    "cue_reading": ("Ознакомьтесь с заданием", "Read the task"),
    "cue_performing": ("Приступите к выполнению", "Begin the task"),
    "cue_one_minute": ("Осталась одна минута", "One minute left"),
    "cue_time_up": ("Перейдите на следующую станцию", "Move on to the next station"),
}


def catalogue(lang: str) -> dict[str, str]:
    """Every text in `lang` (one of LANGS)."""
    index = LANGS.index(lang)
    return {key: pair[index] for key, pair in TEXTS.items()}


def russian(key: str) -> str:
    return TEXTS[key][0]
