"""The examiner's tablet PIN slip, printed when the credential is issued (the PIN is kept nowhere, so this is the
only copy): one A6-sized block per examiner, station and day, four to an A4 page, to cut and hand out."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import FONT, FONT_BOLD


@dataclass
class Slip:
    login: str
    display_name: str
    station: str
    station_name: str
    day: str  # DD.MM.YYYY
    valid: str  # "06.12.2026 00:00 – 07.12.2026 00:00"
    pin: str
    key_id: str


def to_pdf(slips: list[Slip]) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.add_font("DejaVu", "", str(FONT))
    pdf.add_font("DejaVu", "B", str(FONT_BOLD if FONT_BOLD.exists() else FONT))
    pdf.set_auto_page_break(False)
    w, h = 105.0, 148.5  # A6: four to an A4 page
    for i, slip in enumerate(slips):
        if i % 4 == 0:
            pdf.add_page()
        x, y = (i % 2) * w, ((i % 4) // 2) * h
        pdf.set_draw_color(150, 150, 150)
        pdf.set_line_width(0.2)
        pdf.rect(x + 2, y + 2, w - 4, h - 4)
        pdf.set_xy(x + 8, y + 10)
        pdf.set_font("DejaVu", "B", 12)
        pdf.multi_cell(w - 16, 6, "Вход на планшет члена АПК")
        lines = [("Член комиссии", f"{slip.display_name} ({slip.login})" if slip.display_name else slip.login),
                 ("Станция", f"{slip.station} — {slip.station_name}" if slip.station_name else slip.station),
                 ("День экзамена", slip.day), ("Действует", slip.valid)]
        pdf.set_font("DejaVu", "", 10)
        for label, value in lines:
            pdf.set_x(x + 8)
            pdf.multi_cell(w - 16, 5.5, f"{label}: {value}")
        pdf.set_xy(x + 8, pdf.get_y() + 6)
        pdf.set_font("DejaVu", "", 10)
        pdf.cell(w - 16, 6, "PIN:")
        pdf.set_xy(x + 8, pdf.get_y() + 7)
        pdf.set_font("DejaVu", "B", 28)
        pdf.cell(w - 16, 14, " ".join(slip.pin[i:i + 3] for i in range(0, len(slip.pin), 3)), align="C", border=1)
        pdf.set_xy(x + 8, pdf.get_y() + 20)
        pdf.set_font("DejaVu", "", 8)
        pdf.multi_cell(w - 16, 4, "PIN хранится только здесь. Не передавайте его другим; при утере администратор "
                                  "выдаёт новый (старый перестаёт действовать).")
        pdf.set_x(x + 8)
        pdf.multi_cell(w - 16, 4, f"Ключ {slip.key_id}")
    return bytes(pdf.output())
